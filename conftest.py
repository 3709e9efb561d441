"""Fixtures every test package shares (servers, databases, the in-memory bus)."""

pytest_plugins = ["servicekit.testing.plugin"]
