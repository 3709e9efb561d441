"""Test support: the servers (embedded by default, external when the environment names them),
a database per test run, and the in-memory bus. Loaded as a pytest plugin by the root
``conftest.py``."""

from servicekit.testing.servers import Servers, run_servers

__all__ = ["Servers", "run_servers"]
