"""Secrets of devices: activation codes and per-device MQTT passwords, stored hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_secret(secret: str, salt: str) -> str:
    # The secrets are random (passwords) or short-lived and one-time (activation codes); a salted
    # SHA-256 is enough, and an MQTT broker's auth hook must answer fast.
    return hashlib.sha256(f"{salt}\x00{secret}".encode()).hexdigest()


def matches(secret: str, salt: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(hash_secret(secret, salt), stored)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def normalize_mac(mac: str) -> str:
    digits = mac.replace(":", "").replace("-", "").upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
