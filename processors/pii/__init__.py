"""PII masking: the ``pii`` processor for traces, logs and metrics (docs/pii.md).

config.py      [processors.pii]: detectors, actions, rules, key rules, hash key
validators.py  strict checks (Luhn + issuer, mod-97, SSN areas, addresses)    pure
detectors.py   built-in detector shapes: candidate pattern + confirm         pure
keys.py        blocked / ignored / allowed key globs                          pure
actions.py     redact, mask_partial, hash (HMAC-SHA256), drop                 pure
scan.py        one value: find, merge, mask                                   pure
bulk.py        the one RE2 pass over a serialized batch                       pure
wire.py        map bulk hits to the values that hold them (wire format)      pure
engine.py      one export request: bulk pass, locate, fix via protobuf        pure
corpus.py      built-in samples and near misses (pii-check, tests)            data
metrics.py     self-metrics
processor.py   the async shell and FACTORY
"""

from processors.pii.processor import FACTORY

__all__ = ["FACTORY"]
