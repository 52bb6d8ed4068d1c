"""Self-telemetry: metrics in the collector's names under the ``otelpipe_`` prefix, health, structured logs."""
