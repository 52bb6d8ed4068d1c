"""Connectors: exporters in one pipeline, receivers in others (span_metrics and log_metrics join later)."""
