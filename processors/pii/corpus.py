"""The built-in corpus: PII samples every default detector must catch, and near misses it must leave alone.

``otelpipe pii-check`` runs it through a configured processor; the tests pin the default outputs. All values
are synthetic (documented test card numbers, example domains, RFC 5737 / RFC 3849 address ranges).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    # The detector that must catch ``secret`` in ``text``.
    detector: str
    text: str
    # What must not survive masking.
    secret: str
    # The exact result under the default configuration, where it is pinned.
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class NearMiss:
    text: str
    # Why it looks like PII but is not.
    why: str


POSITIVES: tuple[Sample, ...] = (
    # email
    Sample("email", "john.doe@example.com", "john.doe@example.com", "[REDACTED:email]"),
    Sample("email", "sent to Jane <jane+orders@mail.example.co.uk>", "jane+orders@mail.example.co.uk",
           "sent to Jane <[REDACTED:email]>"),
    Sample("email", "/users/john%40example.com/profile", "john%40example.com", "/users/[REDACTED:email]/profile"),
    # credit_card: documented test numbers of each network, grouped and not
    Sample("credit_card", "4111111111111111", "4111111111111111", "[REDACTED:credit_card]"),
    Sample("credit_card", "card 4111 1111 1111 1111 declined", "4111 1111 1111 1111",
           "card [REDACTED:credit_card] declined"),
    Sample("credit_card", "pan=4012-8888-8888-1881", "4012-8888-8888-1881", "pan=[REDACTED:credit_card]"),
    Sample("credit_card", "visa13 4222222222222", "4222222222222"),
    Sample("credit_card", "mc 5555555555554444", "5555555555554444"),
    Sample("credit_card", "mc2 2223003122003222", "2223003122003222"),
    Sample("credit_card", "amex 3782 822463 10005", "3782 822463 10005"),
    Sample("credit_card", "discover 6011111111111117", "6011111111111117"),
    Sample("credit_card", "diners 30569309025904", "30569309025904"),
    Sample("credit_card", "jcb 3530111333300000", "3530111333300000"),
    Sample("credit_card", "unionpay 6200000000000005", "6200000000000005"),
    Sample("credit_card", "order 1234 4111 1111 1111 1111", "4111 1111 1111 1111",
           "order 1234 [REDACTED:credit_card]"),
    # us_ssn
    Sample("us_ssn", "ssn 123-45-6789", "123-45-6789", "ssn [REDACTED:us_ssn]"),
    Sample("us_ssn", "SSN:078-05-1120.", "078-05-1120", "SSN:[REDACTED:us_ssn]."),
    # ipv4 (a four-part version string such as 1.2.3.4 is masked too: it cannot be told from an address)
    Sample("ipv4", "client 203.0.113.7:443", "203.0.113.7", "client [REDACTED:ipv4]:443"),
    Sample("ipv4", "192.168.1.20", "192.168.1.20", "[REDACTED:ipv4]"),
    Sample("ipv4", "x-forwarded-for: 198.51.100.23, 10.0.0.5", "198.51.100.23"),
    Sample("ipv4", "1.2.3.4", "1.2.3.4", "[REDACTED:ipv4]"),
    # ipv6
    Sample("ipv6", "2001:db8::1", "2001:db8::1", "[REDACTED:ipv6]"),
    Sample("ipv6", "peer [2001:0db8:85a3:0000:0000:8a2e:0370:7334]:443", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
           "peer [[REDACTED:ipv6]]:443"),
    Sample("ipv6", "from fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
    Sample("ipv6", "mapped ::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    # phone
    Sample("phone", "call +1 415 555 2671", "+1 415 555 2671", "call [REDACTED:phone]"),
    Sample("phone", "+44 20 7946 0958", "+44 20 7946 0958", "[REDACTED:phone]"),
    Sample("phone", "tel:+4930123456", "+4930123456", "tel:[REDACTED:phone]"),
    Sample("phone", "(415) 555-2671", "(415) 555-2671", "[REDACTED:phone]"),
    Sample("phone", "phone=415-555-2671", "415-555-2671", "phone=[REDACTED:phone]"),
    Sample("phone", "ring 020 7946 0958 now", "020 7946 0958", "ring [REDACTED:phone] now"),
    Sample("phone", "+49 (0)30 1234567", "+49 (0)30 1234567"),
    # jwt
    Sample(
        "jwt",
        "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2"
        "MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
        "MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "token [REDACTED:jwt]",
    ),
    # credentials
    Sample("credentials", "Authorization: Bearer abcdef0123456789ABCDEF", "abcdef0123456789ABCDEF",
           "Authorization: Bearer [REDACTED:credentials]"),
    Sample("credentials", "Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "Basic [REDACTED:credentials]"),
    Sample("credentials", "aws key AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "aws key [REDACTED:credentials]"),
    Sample("credentials", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    Sample("credentials", "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    Sample("credentials", "slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
    Sample("credentials", "GET /v1/items?api_key=abcd1234secret&page=2", "abcd1234secret",
           "GET /v1/items?api_key=[REDACTED:blocked_key]&page=2"),
    Sample("credentials", "login failed password=hunter2 for admin", "hunter2",
           "login failed password=[REDACTED:credentials] for admin"),
    Sample("credentials", '{"user": "ann", "secret": "correct horse battery"}', "correct horse battery",
           '{"user": "ann", "secret": "[REDACTED:credentials]"}'),
    Sample("credentials", "postgres://app:s3cr3tPass@db:5432/orders", "s3cr3tPass",
           "postgres://app:[REDACTED:credentials]@db:5432/orders"),
    Sample("credentials", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
           "MIIEowIBAAKCAQEA"),
    # iban
    Sample("iban", "DE89370400440532013000", "DE89370400440532013000", "[REDACTED:iban]"),
    Sample("iban", "pay to GB82 WEST 1234 5698 7654 32 today", "GB82 WEST 1234 5698 7654 32",
           "pay to [REDACTED:iban] today"),
    Sample("iban", "FR1420041010050500013M02606", "FR1420041010050500013M02606"),
    # URL query parameters are decoded and scanned as values
    Sample("email", "https://shop.example.com/cb?email=john.doe%40example.com&step=2", "john.doe%40example.com",
           "https://shop.example.com/cb?email=[REDACTED:email]&step=2"),
    Sample("credit_card", "/pay?pan=4111+1111+1111+1111&ok=1", "4111+1111+1111+1111",
           "/pay?pan=[REDACTED:credit_card]&ok=1"),
)  # fmt: skip

NEAR_MISSES: tuple[NearMiss, ...] = (
    NearMiss("4111111111111112", "card-shaped, bad Luhn"),
    NearMiss("4111 1111 1111 1112", "grouped card, bad Luhn"),
    NearMiss("1700000000000", "13-digit epoch milliseconds"),
    NearMiss("ts=1700000000123 took 1234567890123ms", "13-digit numbers without a card network prefix"),
    NearMiss("9111111111111111", "Luhn-valid but no network starts with 9"),
    NearMiss("12345678901234567890123", "a 23-digit id"),
    NearMiss("2024-01-15T10:30:00.123Z", "ISO timestamp"),
    NearMiss("2024-01-15 10:30:00 +01:00", "date and time with offset"),
    NearMiss("took 10:30:00", "clock time"),
    NearMiss("v1.2.3.4", "version with a v prefix"),
    NearMiss("service 1.2.3", "three-part version"),
    NearMiss("1.2.3.4.5", "five-part version or OID"),
    NearMiss("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36",
             "user agent: Chrome's reduced version 120.0.0.0 is a network address shape"),
    NearMiss("999.1.1.1", "octet above 255"),
    NearMiss("127.0.0.1", "loopback"),
    NearMiss("listening on 0.0.0.0:8080", "unspecified address"),
    NearMiss("::1", "IPv6 loopback"),
    NearMiss("std::vector<int>::iterator", "C++ scope operator"),
    NearMiss("mac 00:1a:2b:3c:4d:5e", "MAC address"),
    NearMiss("550e8400-e29b-41d4-a716-446655440000", "UUID"),
    NearMiss("trace 4bf92f3577b34da6a3ce929d0e0e4736", "trace id"),
    NearMiss("ORD-2024-000123456", "order id"),
    NearMiss("order 123456789 shipped", "9-digit order number (no dashes: not an SSN)"),
    NearMiss("000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000", "impossible SSNs"),
    NearMiss("DE89370400440532013001", "IBAN with a bad check"),
    NearMiss("ZZ89370400440532013000", "no such IBAN country"),
    NearMiss("user@localhost", "no top-level domain"),
    NearMiss("assets/logo@2x.png", "file name"),
    NearMiss("basic authentication failed", "the word basic"),
    NearMiss("missing bearer token", "the word bearer"),
    NearMiss("task-abcdefghijklmnopqrstuvwxyz", "sk- inside a word"),
    NearMiss("password reset email sent", "the word password without a value"),
    NearMiss("+0100", "time-zone offset"),
    NearMiss("415-555", "too short for a phone number"),
    NearMiss("eyJhbGciOiJIUzI1NiJ9", "a JWT header alone"),
)  # fmt: skip

DETECTORS_COVERED = frozenset(s.detector for s in POSITIVES)
