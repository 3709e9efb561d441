"""The error the embedded servers raise when one cannot be started or stopped."""

from __future__ import annotations


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start, did not become ready in time, or would not stop."""
