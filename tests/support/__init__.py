"""Test support: sinks, a fake clock, data builders, settings for components under test."""
