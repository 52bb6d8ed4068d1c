"""Configuration: TOML loading, strict decoding with full-key errors, cross-checks, and example configs."""
