"""Delivery under faults: the fault matrix, and what the delivery stages cost.

    python -m bench.faults                       # every scenario, then the cost table
    python -m bench.faults --scenario kill_9     # some scenarios (repeat the flag)
    python -m bench.faults --cost-only           # only the cost table (in-process, no daemon)

Fault matrix: the real daemon (``otelpipe run``) between an OTLP/gRPC client and an OTLP/HTTP backend, both in
this process on loopback. The client sends 100-span requests at a fixed rate and behaves like an OTLP SDK:
a retryable refusal is retried after its hint (RetryInfo, 1 s by default) until the request has been refused
for 10 s, then given up (the SDK's export timeout). The backend can be down (nothing listening), answer 5xx or
429 + Retry-After, or be fine. Accounting is by span id:

    sent          spans in requests the client tried to send
    acknowledged  spans in requests the daemon answered OK
    delivered     acknowledged spans the backend stored (answered 200)
    duplicated    extra copies the backend stored
    dropped       spans the daemon counted as dropped, by reason (otelpipe_*_dropped_*)
    lost          acknowledged, not delivered, not counted as dropped: must be 0

Cost: the exporter helper and the processors driven in-process with a no-op send, 1000-span requests of
bench/gen.py (~360 KB): CPU microseconds per request and spans per CPU-second, including the event loop.
Results go to bench/results/faults.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from bench.fault_cost import cost_table
from bench.fault_report import Row, write_report
from bench.fault_rig import Backend, ClientTally, DaemonProc, Load, Peak, drops, exporter

RESULTS = Path(__file__).parent / "results"


# --------------------------------------------------------------------------------------------- scenarios


def _settle(backend: Backend, acked: set[bytes], timeout_s: float = 120.0) -> None:
    """Wait until every acknowledged span is stored, or the timeout (then the row shows the loss)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if acked <= set(backend.snapshot()):
            return
        time.sleep(0.2)


def _row(
    name: str,
    fault: str,
    tally: ClientTally,
    backend: Backend,
    dropped: dict[str, float],
    codes: list[int | None],
    peak: int,
    started: float,
    notes: str = "",
) -> Row:
    stored = backend.snapshot()
    distinct = set(stored)
    counted = int(sum(dropped.values()))
    missing = len(tally.acked_ids - distinct)
    return Row(
        scenario=name,
        fault=fault,
        sent=tally.sent,
        acknowledged=tally.acknowledged,
        delivered=len(tally.acked_ids & distinct),
        duplicated=len(stored) - len(distinct),
        dropped=dropped,
        lost=max(0, missing - counted),
        client_refusals=tally.refusals,
        client_gave_up=tally.gave_up,
        client_other_errors=tally.other_errors,
        daemon_exit_codes=codes,
        peak_rss_mib=round(peak / 2**20, 1),
        seconds=round(time.monotonic() - started, 1),
        notes=notes,
    )


@contextmanager
def _world(tmp: Path, body: Callable[[Backend], str]) -> Iterator[tuple[Backend, DaemonProc]]:
    backend = Backend()
    backend.set_mode("ok")
    daemon = DaemonProc(tmp / "run1", body(backend)).start()
    try:
        yield backend, daemon
    finally:
        daemon.stop()
        backend.close()


def _pid(d: DaemonProc) -> int | None:
    return d.proc.pid if d.proc is not None and d.proc.poll() is None else None


def _fault_window(
    tmp: Path,
    make_exporter: Callable[[Backend], str],
    rate: float,
    seed: int,
    *,
    mode: str,
    lead_s: float,
    fault_s: float,
    name: str,
    label: str,
    notes: str = "",
) -> Row:
    """Healthy for ``lead_s``, the backend in ``mode`` for ``fault_s``, healthy again; then account."""
    started = time.monotonic()
    with _world(tmp, make_exporter) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=seed).start()
        time.sleep(lead_s)  # bench timeline, not a test
        backend.set_mode(mode)
        time.sleep(fault_s)
        backend.set_mode("ok")
        time.sleep(3)
        tally = load.stop()
        _settle(backend, tally.acked_ids)
        dropped = drops(d.metrics())
        code = d.stop()
        return _row(name, label, tally, backend, dropped, [code], peak.stop(), started, notes=notes)


def scenario_backend_outage(tmp: Path, name: str, mode: str, fault_s: float, rate: float) -> Row:
    labels = {
        "down": f"backend down (connection refused) for {fault_s:.0f} s",
        "5xx": f"backend answers 502/503/504 for {fault_s:.0f} s",
        "429": f"backend answers 429 + Retry-After: 1 for {fault_s:.0f} s",
    }
    return _fault_window(
        tmp, exporter, rate, hash(name) % 1000, mode=mode, lead_s=2, fault_s=fault_s, name=name, label=labels[mode]
    )


def scenario_kill_9(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    queue_dir = tmp / "queue"
    queue = f'type = "disk"\npath = "{queue_dir}"'
    backend = Backend()
    backend.set_mode("5xx")  # data piles up in the disk queue, some of it in flight
    d1 = DaemonProc(tmp / "run1", exporter(backend, queue=queue)).start()
    current = [d1]
    peak = Peak(lambda: _pid(current[0]))
    load = Load(lambda: current[0].target, rate, seed=17).start()
    time.sleep(3)
    backend.set_mode("ok")
    time.sleep(1)
    backend.set_mode("5xx")
    time.sleep(1)
    d1.signal(signal.SIGKILL)
    code1 = d1.wait()
    d2 = DaemonProc(tmp / "run2", exporter(backend, queue=queue))
    d2.start()
    current[0] = d2
    backend.set_mode("ok")
    time.sleep(3)
    tally = load.stop()
    _settle(backend, tally.acked_ids)
    metrics = d2.metrics()
    dropped = drops(metrics)
    recovered = metrics.get('otelpipe_exporter_queue_recovered_spans_total{exporter="otlphttp"}', 0.0)
    code2 = d2.stop()
    row = _row(
        "kill_9",
        "kill -9 during load, disk queue, backend failing; restart",
        tally,
        backend,
        dropped,
        [code1, code2],
        peak.stop(),
        started,
        notes=f"{recovered:.0f} spans recovered from the disk queue after the restart",
    )
    backend.close()
    return row


def scenario_sigterm(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    batch = "[exporters.otlphttp.batch]\nsend_batch_size = 2000\ntimeout_ms = 1000\n"

    def body(b: Backend) -> str:
        with_processor = exporter(b, batch=batch).replace(
            'exporters = ["otlphttp"]', 'processors = ["batch"]\nexporters = ["otlphttp"]'
        )
        return with_processor + "[processors.batch]\nsend_batch_size = 1000\ntimeout_ms = 1000\n"

    with _world(tmp, body) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=23).start()
        time.sleep(3)
        backend.set_mode("5xx")  # sends fail and retry: batches in flight and backing off at SIGTERM
        time.sleep(1)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        backend.set_mode("ok")
        code = d.wait()
        tally = load.stop()
        _settle(backend, tally.acked_ids, timeout_s=10)
        log = (d.workdir / "daemon.log").read_text(errors="replace")
        dropped = _drops_from_log(log)
        return _row(
            "sigterm",
            "SIGTERM during load with batches buffered and sends retrying",
            tally,
            backend,
            dropped,
            [code],
            peak.stop(),
            started,
            notes="requests after SIGTERM are refused (UNAVAILABLE) and not acknowledged",
        )


def _drops_from_log(log: str) -> dict[str, float]:
    """After exit there is no /metrics: shutdown drops are logged at ERROR with dropped_items."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        if '"dropped_items"' in line:
            out["shutdown"] = out.get("shutdown", 0.0) + float(json.loads(line)["dropped_items"])
    return out


def scenario_sighup(tmp: Path, rate: float) -> Row:
    started = time.monotonic()
    with _world(tmp, lambda b: exporter(b)) as (backend, d):
        peak = Peak(lambda: _pid(d))
        load = Load(lambda: d.target, rate, seed=29).start()
        time.sleep(2)
        valid = (
            d.body.replace("num_consumers = 4", "num_consumers = 2").replace(
                'exporters = ["otlphttp"]', 'processors = ["batch"]\nexporters = ["otlphttp"]'
            )
            + "\n[processors.batch]\ntimeout_ms = 100\n"
        )
        d.write(valid)
        d.signal(signal.SIGHUP)
        time.sleep(2)
        d.write(valid.replace("timeout_ms = 100", "timeout_ms = -1"))  # invalid: reported, ignored
        d.signal(signal.SIGHUP)
        time.sleep(2)
        d.write(d.body)
        d.signal(signal.SIGHUP)
        time.sleep(2)
        tally = load.stop()
        _settle(backend, tally.acked_ids)
        dropped = drops(d.metrics())
        code = d.stop()
        return _row(
            "sighup",
            "SIGHUP x3 during load (valid, invalid, valid back)",
            tally,
            backend,
            dropped,
            [code],
            peak.stop(),
            started,
            notes="the receiver is unchanged, so its ports keep serving through every reload",
        )


def scenario_disk_full(tmp: Path, rate: float, fault_s: float) -> Row:
    queue = f'type = "disk"\npath = "{tmp / "queue"}"\nmax_bytes = 2097152'
    return _fault_window(
        tmp,
        lambda b: exporter(b, queue=queue),
        rate,
        31,
        mode="down",
        lead_s=1,
        fault_s=fault_s,
        name="disk_full",
        label=f"disk queue limited to 2 MiB, backend down {fault_s:.0f} s",
        notes="a full queue refuses (UNAVAILABLE + RetryInfo); the client retries, then gives up after 10 s",
    )


# --------------------------------------------------------------------------------------------- main

SCENARIOS = ("backend_down", "5xx_storm", "429_storm", "kill_9", "sigterm", "sighup", "disk_full")


def run_scenarios(names: list[str], down_s: float, storm_s: float, rate: float) -> list[Row]:
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_dir:
            tmp = Path(tmp_dir)
            if name == "backend_down":
                row = scenario_backend_outage(tmp, name, "down", down_s, rate)
            elif name == "5xx_storm":
                row = scenario_backend_outage(tmp, name, "5xx", storm_s, rate)
            elif name == "429_storm":
                row = scenario_backend_outage(tmp, name, "429", storm_s, rate)
            elif name == "kill_9":
                row = scenario_kill_9(tmp, rate)
            elif name == "sigterm":
                row = scenario_sigterm(tmp, rate)
            elif name == "sighup":
                row = scenario_sighup(tmp, rate)
            else:
                row = scenario_disk_full(tmp, rate, storm_s)
        print(json.dumps(asdict(row)), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    ap.add_argument("--down-s", type=float, default=30.0, help="backend outage length (default 30)")
    ap.add_argument("--storm-s", type=float, default=10.0, help="5xx / 429 storm and disk-full outage length")
    ap.add_argument("--rate", type=float, default=20.0, help="client requests per second (100 spans each)")
    ap.add_argument("--cost-only", action="store_true", help="only the cost table")
    ap.add_argument("--no-cost", action="store_true", help="skip the cost table")
    ap.add_argument("--cost-requests", type=int, default=300)
    ap.add_argument("--cost-case", default="", help="only the cost case of exactly this name")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    random.seed(1)
    names = list(args.scenario or SCENARIOS)
    rows = [] if args.cost_only else run_scenarios(names, args.down_s, args.storm_s, args.rate)
    cost = [] if args.no_cost else cost_table(args.cost_requests, args.cost_case)
    for c in cost:
        print(json.dumps(c), flush=True)
    write_report(args.out, rows, cost, args)
    lost = sum(r.lost for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
