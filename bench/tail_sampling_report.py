"""The tail sampling benchmark's report: bench/results/tail_sampling.{json,md}.

The measured parts as tables, and the measurements the design was chosen by (DESIGN_ROWS: development runs,
the alternatives are no longer in the tree).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.machine import machine_line

# Measured while choosing the design (development runs on this machine, same data; the module docstrings of
# processors/tail_sampling/{table,marks,columns,wire}.py explain each choice).
DESIGN_ROWS = (
    (
        "keep spans as upb objects and `extend` the kept ones, or cut them out as bytes",
        "upb objects end to end in process: 2.1-3.0 (table above); bytes: 1.6-1.8",
        "bytes",
    ),
    (
        "cut span bodies: Python wire walk / offsets into the request / shadow-schema parse in C",
        "0.24-0.35 / +0.1, but pins whole request buffers while any trace of them waits / 0.05-0.2",
        "shadow parse (wire.py)",
    ),
    ("copy each span into a per-trace `bytearray`", "+0.45", "no: one joined blob per trace and request (marks.py)"),
    (
        "hold a trace as Python objects (an object and a list per trace)",
        "steady state, 1.5M spans held: 3.5 with the GC on, 2.2 off (full collections walk every held trace)",
        "columns: arrays + untracked tuples (table.py); GC share now ~0.05",
    ),
    (
        "a tuple built by `tuple(map(...))`",
        "allocated before its items, it stays GC-tracked into the oldest generation (889 per 300 requests)",
        "tuples of bytes and ints only",
    ),
    ("upb nested classes of a private pool not held", "10 objects of cyclic garbage per request", "all held"),
    (
        "read span fields through the protobuf API / as columns of a folded shadow message",
        "0.62 / 0.29 (grouping included)",
        "columns, with verified fallback (columns.py)",
    ),
    (
        "find the ERROR spans of a scope: search every body for the code's bytes / read two bytes per body where "
        "every encoder puts the code",
        "0.27 / ~0.03 per span of a scope holding one",
        "two-byte columns, whole-body search as fallback, each candidate parsed (columns.py)",
    ),
    (
        "find root spans: a Python check per body / byte 28 of every body read in C",
        "~0.12 / ~0.03 per span of a scope holding one",
        "byte column, count checked against the parent column",
    ),
    (
        "one bytes object per span / per trace and request",
        "per span: one more free per span, on cold memory",
        "per trace and request",
    ),
    (
        "dropped-id filter hash: BLAKE2b / Python's cached `hash`",
        "0.33 / 0.18 per trace id",
        "`hash` (BLAKE2b in replay)",
    ),
)
DESIGN_NOTES = "\n".join(
    [
        "## How the design was chosen (development measurements, us per span unless said)",
        "",
        "Measured on this machine with the same data while choosing; the designs compared are no longer in the tree.",
        "",
        "| question | measured | chosen |",
        "|---|---|---|",
        *(f"| {q} | {m} | {c} |" for q, m, c in DESIGN_ROWS),
        "",
    ]
)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tail_sampling.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Tail sampling: OTLP/gRPC -> tail_sampling (errors + latency + 10% probabilistic) -> nop",
        "",
        f"{machine_line(m)}. Daemon pinned to one core, load generator on the other "
        "(shared with other "
        "work on this machine: figures vary by ~10-15% between runs). 1000-span requests of 10-span traces "
        "(bench/gen.py, ~365 bytes per span, spans of a trace spread over up to 6 resources), every trace id new; "
        "policies: status_code ERROR, latency >= 79 ms, probabilistic 10%; decision_wait_ms 5000, root rule off "
        "(every trace waits the full 5 s, the most memory) or on (decided 1 s after its root, each trace's root "
        "is in its request). Reproduce: `python -m bench.tail_sampling`.",
        "",
    ]
    if "throughput" in report:
        t = report["throughput"]
        lines += [
            "## Throughput",
            "",
            "| run | root rule | spans per CPU-second | spans/s (wall) | daemon CPU | spans kept | decision latency "
            "p50 / p99 (histogram bucket) | refused requests | spans held | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(t["runs"], 1):
            lat = r["latency"]
            after = r.get("decision_wait_after_root_ms", 0)
            rule = f"quiet {after} ms" if after else "off"
            lines.append(
                f"| {i} | {rule} | {r['spans_per_cpu_second']:,} | {r['spans_per_second_wall']:,} | "
                f"{r['daemon_cpu_utilisation']:.0%} | {r['kept_share']:.1%} | <= {lat.get('p50_at_most', 0)} s / "
                f"<= {lat.get('p99_at_most', 0)} s | {r['refused_requests']} | {r['spans_held_at_end']:,} | "
                f"{r['peak_rss_bytes'] / 2**20:.0f} MiB |"
            )
        medians = ", ".join(
            f"{'root rule off' if a == '0' else f'root rule on ({a} ms)'}: {m:,}"
            for a, m in t.get("medians_by_after_root_ms", {}).items()
        )
        lines += [
            "",
            f"Medians: {medians}.",
            "",
            f"Median: **{t['median_spans_per_cpu_second']:,} spans per CPU-second** of the daemon (target 300,000). "
            "Decision latency p99 within decision_wait + 1 s in every run. The receive path alone "
            "(bench/results/receive.md) does 1.3-1.4M spans per CPU-second, ~0.75 us of the "
            f"{1e6 / max(1, t['median_spans_per_cpu_second']):.2f} us per span here.",
            "",
        ]
    if "memory" in report:
        r = report["memory"]
        lines += [
            "## Memory per buffered span",
            "",
            f"{r['spans_held']:,} spans held (nothing decided): RSS grew from {r['rss_before_bytes'] / 2**20:.0f} "
            f"MiB to {r['rss_after_bytes'] / 2**20:.0f} MiB, **{r['rss_per_span_bytes']:.0f} bytes of RSS per "
            f"buffered span** for {r['request_bytes_per_span']:.0f} bytes of span on the wire (target: under 1 KB "
            f"for 300 bytes); the processor accounts {r['bytes_held_accounted'] / max(1, r['spans_held']):.0f} bytes "
            "per span against max_bytes (each span's framed size as it came).",
            "",
        ]
    if "inprocess" in report:
        r = report["inprocess"]
        e = r["engine_us_per_span"]
        lines += [
            "## In-process costs (us per span, CPU time, best of 5)",
            "",
            "| step | us per span |",
            "|---|---|",
            f"| parse the request (the receiver does it) | {r['parse_request_us_per_span']} |",
            f"| ingest: cut bodies + read columns + group + merge into the table | {e['ingest']} |",
            f"| decide (3 policies, decision cache), traces just ingested | {e['decide']} |",
            f"| encode kept spans (joining) | {e['encode']} |",
            f"| parse the output request (downstream components read messages) | {e['parse_output']} |",
            f"| **tail sampling total** | **{e['total']}** |",
            f"| alternative: upb span objects grouped, kept ones appended to a new request | "
            f"{r['upb_objects_us_per_span']} |",
            f"| ingest reading span fields as columns in C (shipped) / through the protobuf API | "
            f"{r['ingest_columns_us_per_span']} / {r['ingest_protobuf_api_us_per_span']} |",
            f"| cut bodies: shadow-schema parse (shipped) / Python wire walk | {r['split_shadow_us_per_span']} / "
            f"{r['split_python_walk_us_per_span']} |",
            f"| dropped-id filter hash per trace id: Python hash (shipped) / BLAKE2b (replay) | "
            f"{r['filter_hash_python_us_per_id']} / {r['filter_hash_blake2b_us_per_id']} |",
            "",
            f"Share of spans kept: {r['kept_share']:.1%}.",
            "",
        ]
    if "steady_state" in report:
        on, off = report["steady_state"]["gc_on"], report["steady_state"]["gc_off"]
        lines += [
            "## In-process steady state (us per span, CPU time)",
            "",
            f"300 requests per second of a virtual clock, decisions after 5 s: {on['spans_held']:,} spans held, "
            "decisions on cold data, as in the daemon.",
            "",
            "| | parse | ingest | decide | encode + parse output | total | of which cyclic GC |",
            "|---|---|---|---|---|---|---|",
            f"| GC on | {on['parse']} | {on['ingest']} | {on['decide']} | {on['encode_and_parse_output']} | "
            f"{on['total']} | {on['gc']} |",
            f"| GC off | {off['parse']} | {off['ingest']} | {off['decide']} | {off['encode_and_parse_output']} | "
            f"{off['total']} | - |",
            "",
        ]
    lines.append(DESIGN_NOTES)
    (out / "tail_sampling.md").write_text("\n".join(lines))
