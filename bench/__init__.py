"""otelpipe benchmark harness (load generation, daemon control, measurement and reports)."""
