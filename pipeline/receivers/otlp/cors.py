"""CORS policy for browser senders (pure: headers in, headers out), following the collector's ``cors`` options.

Only listed origins get ``Access-Control-Allow-Origin``; the CORS-safelisted request headers are implicitly
allowed, others only when listed (``"*"`` allows any).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_SAFELISTED_HEADERS = frozenset(("accept", "accept-language", "content-language", "content-type"))
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CorsPolicy:
    def __init__(self, allowed_origins: Iterable[str], allowed_headers: Iterable[str]) -> None:
        patterns = [re.escape(o.lower()).replace(r"\*", ".*") for o in allowed_origins]
        self._origins = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        headers = {h.strip().lower() for h in allowed_headers}
        self._any_header = "*" in headers
        self._headers = _SAFELISTED_HEADERS | headers

    @property
    def enabled(self) -> bool:
        return self._origins is not None

    def origin_allowed(self, origin: str) -> bool:
        return self._origins is not None and self._origins.fullmatch(origin.lower()) is not None

    def response_headers(self, origin: str | None) -> dict[str, str] | None:
        """Headers for an actual (non-preflight) response, or None when the origin gets none."""
        if origin is None or not self.origin_allowed(origin):
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight(self, request_headers: Mapping[str, str]) -> dict[str, str] | None:
        """Headers answering a preflight (OPTIONS with Origin and Access-Control-Request-Method), or None if
        the request is not a preflight. A refused preflight gets only ``Vary``: the browser then blocks the call."""
        origin = request_headers.get("Origin")
        method = request_headers.get("Access-Control-Request-Method")
        if origin is None or method is None:
            return None
        refused = {"Vary": _PREFLIGHT_VARY}
        if method.strip().upper() != "POST" or not self.origin_allowed(origin):
            return refused
        requested = [h.strip().lower() for h in request_headers.get("Access-Control-Request-Headers", "").split(",")]
        requested = [h for h in requested if h]
        if not self._any_header and not all(h in self._headers for h in requested):
            return refused
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Vary": _PREFLIGHT_VARY,
        }
        if requested:
            headers["Access-Control-Allow-Headers"] = ", ".join(requested)
        return headers
