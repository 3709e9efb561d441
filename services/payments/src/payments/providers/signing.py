"""HMAC-SHA256 signatures of provider notifications.

The signed message is ``<timestamp>.`` followed by the raw body bytes, so neither the body nor
the timestamp can be changed or replayed later without breaking the signature. Headers:
``X-Provider-Timestamp`` (Unix seconds) and ``X-Provider-Signature: v1=<hex digest>``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from payments.providers.base import NotificationRejected

TIMESTAMP_HEADER: Final = "X-Provider-Timestamp"
SIGNATURE_HEADER: Final = "X-Provider-Signature"
_SCHEME: Final = "v1="


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SCHEME + mac.hexdigest()


def signed_headers(secret: str, body: bytes, *, now: datetime | None = None) -> dict[str, str]:
    """The headers a provider sends with ``body``."""
    timestamp = int((now or datetime.now(UTC)).timestamp())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: datetime,
    tolerance_seconds: int,
) -> int:
    """Check the signature over the raw ``body``; return the timestamp. ``headers`` must be
    case-insensitive (Starlette's are)."""
    raw_timestamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not raw_timestamp or not given:
        raise NotificationRejected("notification_unsigned", "The notification is not signed.")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise NotificationRejected(
            "invalid_signature", "The notification timestamp is not a number."
        ) from None
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise NotificationRejected("invalid_signature", "The notification signature is wrong.")
    # Checked after the signature so a forger learns nothing about the clock window.
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise NotificationRejected(
            "stale_notification", "The notification timestamp is outside the accepted window."
        )
    return timestamp
