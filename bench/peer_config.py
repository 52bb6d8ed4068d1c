"""The reference collector's YAML, generated from a scenario's otelpipe TOML so both run the same pipeline.

otelpipe keeps the collector's component names and option names (with units in the key), so the mapping is
mostly renaming: ``decision_wait_ms = 2000`` becomes ``decision_wait: 2000ms``. Components without an exact
equivalent map to the closest one and the difference is listed in ``PeerConfig.notes`` (shown in the report):
``pii`` becomes the ``redaction`` processor with the same kinds of values blocked. A component with no
equivalent at all raises ``PeerConfigError`` and the peer run is skipped with that reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Value patterns for the redaction processor that match what otelpipe's default pii detectors catch (the
# collector's redaction processor has no validators: no Luhn, no mod-97, so it masks more false positives).
REDACTION_PATTERNS = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",  # e-mail
    r"\b(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|3[47][0-9]{13}|6011[0-9]{12})\b",  # card numbers
    r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",  # US SSN
    r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b",  # IPv4
    r"\+?[0-9]{1,3}[- ][0-9]{3}[- ][0-9]{3}[- ][0-9]{4}",  # phone
    r"(?i)\b(?:[0-9a-f]{1,4}:){2,7}:?[0-9a-f]{0,4}\b",  # IPv6
)
BLOCKED_KEY_PATTERNS = (
    ".*password.*",
    ".*secret.*",
    ".*token.*",
    ".*api_key.*",
    ".*apikey.*",
    "authorization",
    "cookie",
)


class PeerConfigError(Exception):
    """The scenario uses something the reference collector build cannot run."""


@dataclass(slots=True)
class PeerConfig:
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        return to_yaml(self.config)


def _ms(value: Any) -> str:
    return f"{int(value)}ms"


def _receiver(type_: str, table: dict[str, Any]) -> dict[str, Any]:
    if type_ != "otlp":
        raise PeerConfigError(f"receiver {type_!r} has no mapping to the reference collector")
    protocols: dict[str, Any] = {}
    if table.get("grpc_endpoint", "127.0.0.1:4317"):
        protocols["grpc"] = {
            "endpoint": table.get("grpc_endpoint", "127.0.0.1:4317"),
            "max_recv_msg_size_mib": max(1, int(table.get("max_recv_bytes", 64 << 20)) >> 20),
        }
    if table.get("http_endpoint", "127.0.0.1:4318"):
        protocols["http"] = {"endpoint": table.get("http_endpoint", "127.0.0.1:4318")}
    return {"protocols": protocols}


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": policy["name"], "type": policy["type"]}
    kind = policy["type"]
    if kind == "status_code":
        out["status_code"] = {"status_codes": list(policy.get("status_codes", ["ERROR"]))}
    elif kind == "latency":
        out["latency"] = {"threshold_ms": int(policy["threshold_ms"])}
    elif kind == "probabilistic":
        out["probabilistic"] = {"sampling_percentage": float(policy["sampling_percentage"])}
    elif kind == "always_sample":
        pass
    else:
        # Same option names as the collector by design; pass the rest through unchanged.
        out[kind] = {k: v for k, v in policy.items() if k not in ("name", "type")}
    return out


def _processor(type_: str, table: dict[str, Any], notes: list[str]) -> tuple[str, dict[str, Any]]:
    if type_ == "tail_sampling":
        cfg: dict[str, Any] = {"decision_wait": _ms(table.get("decision_wait_ms", 10000))}
        if "num_traces" in table:
            cfg["num_traces"] = int(table["num_traces"])
        cfg["policies"] = [_policy(p) for p in table.get("policies", [])]
        return "tail_sampling", cfg
    if type_ == "pii":
        notes.append("pii -> redaction (regex value patterns, no validators; allow_all_keys, blocked key patterns)")
        return "redaction", {
            "allow_all_keys": True,
            "blocked_values": list(REDACTION_PATTERNS),
            "blocked_key_patterns": list(BLOCKED_KEY_PATTERNS),
            "summary": "silent",
        }
    if type_ == "batch":
        cfg = {}
        if "send_batch_size" in table:
            cfg["send_batch_size"] = int(table["send_batch_size"])
        if "send_batch_max_size" in table:
            cfg["send_batch_max_size"] = int(table["send_batch_max_size"])
        if "timeout_ms" in table:
            cfg["timeout"] = _ms(table["timeout_ms"])
        return "batch", cfg
    if type_ == "memory_limiter":
        cfg = {"check_interval": _ms(table.get("check_interval_ms", 1000))}
        if "limit_mib" in table:
            cfg["limit_mib"] = int(table["limit_mib"])
        if "spike_limit_mib" in table:
            cfg["spike_limit_mib"] = int(table["spike_limit_mib"])
        return "memory_limiter", cfg
    raise PeerConfigError(f"processor {type_!r} has no mapping to the reference collector")


def _exporter(type_: str, table: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    queue = table.get("sending_queue", {})
    helper: dict[str, Any] = {}
    if queue:
        helper["sending_queue"] = {
            k: v
            for k, v in (
                ("enabled", queue.get("enabled")),
                ("queue_size", queue.get("queue_size")),
                ("num_consumers", queue.get("num_consumers")),
            )
            if v is not None
        }
    if "timeout_ms" in table:
        helper["timeout"] = _ms(table["timeout_ms"])
    if type_ == "otlp":
        return "otlp", {
            "endpoint": table["endpoint"],
            "tls": {"insecure": bool(table.get("insecure", False))},
            "compression": table.get("compression", "gzip"),
            **helper,
        }
    if type_ == "otlphttp":
        return "otlphttp", {"endpoint": table["endpoint"], "compression": table.get("compression", "gzip"), **helper}
    if type_ == "nop":
        return "nop", {}
    if type_ == "debug":
        return "debug", {"verbosity": table.get("verbosity", "basic")}
    raise PeerConfigError(f"exporter {type_!r} has no mapping to the reference collector")


def _rename(component_id: str, new_type: str) -> str:
    _, sep, name = component_id.partition("/")
    return f"{new_type}/{name}" if sep else new_type


def generate(tree: dict[str, Any], telemetry_host: str, telemetry_port: int) -> PeerConfig:
    """The collector configuration equivalent to the otelpipe configuration ``tree`` (addresses filled in)."""
    notes: list[str] = []
    config: dict[str, Any] = {"receivers": {}, "processors": {}, "exporters": {}}
    renamed: dict[str, str] = {}
    for key, table in tree.get("receivers", {}).items():
        config["receivers"][key] = _receiver(key.split("/")[0], table)
        renamed[key] = key
    for key, table in tree.get("processors", {}).items():
        new_type, cfg = _processor(key.split("/")[0], table, notes)
        renamed[key] = _rename(key, new_type)
        config["processors"][renamed[key]] = cfg
    for key, table in tree.get("exporters", {}).items():
        new_type, cfg = _exporter(key.split("/")[0], table)
        renamed[key] = _rename(key, new_type)
        config["exporters"][renamed[key]] = cfg
    if tree.get("connectors"):
        raise PeerConfigError("connectors have no mapping to the reference collector yet")
    pipelines: dict[str, Any] = {}
    for name, pipe in tree.get("pipelines", {}).items():
        parts = {part: [renamed[c] for c in pipe.get(part, [])] for part in ("receivers", "processors", "exporters")}
        if name.split("/")[0] == "logs":
            sampled = [c for c in parts["processors"] if c.split("/")[0] == "tail_sampling"]
            if sampled:
                # The collector's tail_sampling processor takes traces only ("telemetry type is not supported").
                parts["processors"] = [c for c in parts["processors"] if c not in sampled]
                notes.append(f"pipeline {name}: the collector's tail_sampling has no logs support, logs pass unsampled")
        pipelines[name] = {part: ids for part, ids in parts.items() if ids}
    used = {c for pipe in pipelines.values() for c in pipe.get("processors", [])}
    for unused in [c for c in config["processors"] if c not in used]:
        del config["processors"][unused]
    if not config["processors"]:
        del config["processors"]
    config["service"] = {
        "telemetry": {
            "logs": {"level": "warn"},
            "metrics": {
                "level": "detailed",
                "readers": [{"pull": {"exporter": {"prometheus": {"host": telemetry_host, "port": telemetry_port}}}}],
            },
        },
        "pipelines": pipelines,
    }
    return PeerConfig(config, notes)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars; strings are JSON-quoted (valid YAML double quotes)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if (isinstance(item, dict) and item) or (isinstance(item, list) and item):
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                nested = to_yaml(item, indent + 1).splitlines()
                lines.append(f"{pad}- {nested[0].strip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value))
