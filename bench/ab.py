"""Two builds of the PII masking engine, timed alternately on the same fresh requests.

    python -m bench.ab ROOT_A ROOT_B [--rounds 8] [--requests 200] [--warmup 40]

Each ROOT is an import root holding ``pipeline/`` and ``processors/``: a source tree, or a directory made by
``pip install --no-deps --target DIR .`` (the compiled build). The 1000-span trace requests (unique PII in 10% of
the values) are generated once and written to a temporary file. Each round runs A, then B, each in a fresh
process started from a neutral directory (the parent checks that the engine was imported from ROOT), which
warms one engine on ``--warmup`` requests and times the masking of the next ``--requests`` (CPU time, one
core). It prints each pair and the median ratio B/A, and says so when the two builds' masked outputs differ (a
faster build that masks less is not faster at the same job).

Why: this machine's speed drifts by up to 30% within an hour and consecutive runs differ by up to 13%, more
than most changes measured; figures from different runs compare only as ratios of runs taken side by side.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from bench.pii_data import trace_requests
from pipeline.model import Signal

# Run with ``python -c`` so that only the engine comes from ROOT, whatever version of this module ROOT holds.
_CHILD = """
import hashlib, pickle, sys, time
import msgspec
import processors.pii.engine
from pipeline.model import Signal
from processors.pii.config import PiiConfig
from processors.pii.engine import Engine

raws = pickle.loads(open(sys.argv[1], "rb").read())
warmup = int(sys.argv[2])
signal = Signal(sys.argv[3])
engine = Engine(msgspec.convert({}, PiiConfig))
for raw in raws[:warmup]:
    engine.process(signal, raw)
outputs = []
start = time.process_time()
for raw in raws[warmup:]:
    outputs.append(engine.process(signal, raw).raw or raw)
seconds = time.process_time() - start
digest = hashlib.sha256()
for out in outputs:
    digest.update(out)
print(processors.pii.engine.__file__)
print(digest.hexdigest())
print(seconds / len(outputs) * 1e3)
"""


class Timed(NamedTuple):
    ms_per_request: float
    # SHA-256 over the timed requests as masked: builds that mask alike give the same digest.
    digest: str


def timed_child(root: Path, data: Path, warmup: int, signal: Signal = Signal.TRACES) -> Timed:
    """CPU milliseconds per request of the engine from ``root``, in a fresh process: warmed on the first
    ``warmup`` requests pickled in ``data``, timed on the rest; and what it made of them."""
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data), str(warmup), signal.value],
        env=env,
        cwd=tempfile.gettempdir(),  # not a source tree: only ROOT may provide the modules
        check=True,
        capture_output=True,
        text=True,
    )
    engine_file, digest, ms = out.stdout.strip().splitlines()[-3:]
    if not Path(engine_file).resolve().is_relative_to(root):
        raise SystemExit(f"{root}: the engine came from {engine_file}, not from this root")
    return Timed(float(ms), digest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="*", type=Path)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=40)
    args = ap.parse_args(argv)
    if len(args.roots) != 2:
        ap.error("give two import roots: A and B")
    root_a, root_b = (r.resolve() for r in args.roots)
    raws, _ = trace_requests(args.warmup + args.requests, seed=99)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "requests.pickle"
        data.write_bytes(pickle.dumps(raws))
        ratios = []
        digests = set()
        for n in range(args.rounds):
            a = timed_child(root_a, data, args.warmup)
            b = timed_child(root_b, data, args.warmup)
            digests |= {a.digest, b.digest}
            ratio = b.ms_per_request / a.ms_per_request
            ratios.append(ratio)
            print(
                f"round {n + 1}: A {a.ms_per_request:.3f} ms  B {b.ms_per_request:.3f} ms per request  B/A {ratio:.3f}",
                flush=True,
            )
    if len(digests) > 1:
        print("A and B masked the requests differently (their outputs differ): the ratio compares different work")
    print(f"median B/A {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
