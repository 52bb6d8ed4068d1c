"""Processors: the middle of a pipeline. No sockets, no clients; time only through an injected clock
(an import-linter contract in pyproject.toml keeps network edges out)."""
