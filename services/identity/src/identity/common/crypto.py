"""Encryption at rest for private signing keys (AES-256-GCM with a key from settings)."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_NONE = "none"
ENCRYPTION_AESGCM = "aes256gcm"


class KeyEncryption:
    """Seals and opens private keys; the key id is bound as associated data, so a sealed key
    copied onto another row does not open."""

    def __init__(self, secret: str | None) -> None:
        self._aead: AESGCM | None = None
        if secret:
            try:
                raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
            except (binascii.Error, ValueError) as exc:
                raise ValueError("the key encryption key must be URL-safe base64") from exc
            if len(raw) != 32:
                raise ValueError("the key encryption key must be 32 bytes (256 bits)")
            self._aead = AESGCM(raw)

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    @property
    def scheme(self) -> str:
        return ENCRYPTION_AESGCM if self._aead is not None else ENCRYPTION_NONE

    def seal(self, plaintext: str, kid: str) -> str:
        if self._aead is None:
            return plaintext
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), kid.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, scheme: str, kid: str) -> str:
        if scheme == ENCRYPTION_NONE:
            return stored
        if scheme != ENCRYPTION_AESGCM:
            raise ValueError(f"unknown key encryption scheme {scheme!r}")
        if self._aead is None:
            raise RuntimeError(
                f"signing key {kid} is encrypted but IDENTITY_KEY_ENCRYPTION_KEY is not set"
            )
        raw = base64.urlsafe_b64decode(stored.encode("ascii"))
        return self._aead.decrypt(raw[:12], raw[12:], kid.encode()).decode()
