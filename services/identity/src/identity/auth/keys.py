"""Token signing keys: kept in the database, cached per replica, rotated without downtime.

Exactly one key is ``active`` and signs new tokens. Rotation makes a new key active and
retires the old one, which stays in the JWKS until every token it signed has expired (the
access-token lifetime plus the verifiers' leeway), then disappears. Verifiers that meet the
new ``kid`` refetch the JWKS (servicekit's ``JwksKeySource`` does so on an unknown ``kid``),
so nobody is logged out by a rotation or by a restart.

Operators rotate with ``python -m identity rotate-keys``; merchants' admins cannot, since the
keys sign every merchant's tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from joserfc.jwk import ECKey, OKPKey

from contracts.envelope import utcnow
from identity.auth.models import SigningKey as SigningKeyRow
from identity.common.crypto import KeyEncryption
from servicekit.auth import SigningKey, UnknownKeyError, generate_signing_key
from servicekit.db import Database

log = logging.getLogger(__name__)

#: Serialises key creation and rotation across replicas.
KEYS_LOCK = 0x1D_0001
#: Added to the access-token lifetime before a retired key leaves the JWKS: the verifiers'
#: leeway (30 s) and their JWKS cache (5 min).
PUBLISH_MARGIN = timedelta(minutes=6)


@dataclass(frozen=True)
class _Snapshot:
    signing: SigningKey
    public: dict[str, dict[str, Any]]
    loaded_at: float


def _import_private(jwk: dict[str, Any]) -> SigningKey:
    if jwk.get("kty") == "OKP":
        return OKPKey.import_key(jwk)
    return ECKey.import_key(jwk)


class KeyStore:
    """The signing keys of this identity deployment."""

    def __init__(
        self,
        encryption: KeyEncryption,
        *,
        algorithm: str,
        access_ttl: timedelta,
        cache_seconds: float,
    ) -> None:
        self.encryption = encryption
        self.algorithm = algorithm
        self.access_ttl = access_ttl
        self.cache_seconds = cache_seconds
        self._database: Database | None = None
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()
        self._last_unknown_reload = 0.0

    def bind(self, database: Database) -> None:
        self._database = database
        self._snapshot = None

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("the key store is not bound to a database yet")
        return self._database

    def _new_row(self) -> SigningKeyRow:
        key = generate_signing_key(self.algorithm)
        assert key.kid is not None
        private = json.dumps(dict(key.as_dict(private=True)))
        return SigningKeyRow(
            kid=key.kid,
            algorithm=self.algorithm,
            private_key=self.encryption.seal(private, key.kid),
            encryption=self.encryption.scheme,
            public_jwk=dict(key.as_dict(private=False)),
            status="active",
        )

    async def ensure_active(self) -> None:
        """Create the first key when there is none (start-up)."""
        async with self.database.transaction() as session:
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(KEYS_LOCK)))
            active = await session.scalar(
                sa.select(SigningKeyRow.kid).where(SigningKeyRow.status == "active")
            )
            if active is None:
                row = self._new_row()
                session.add(row)
                log.info("created signing key %s", row.kid)

    async def rotate(self) -> str:
        """Make a new key active, retire the current one, forget keys nobody can still hold
        a token of. Returns the new ``kid``."""
        now = utcnow()
        async with self.database.transaction() as session:
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(KEYS_LOCK)))
            await session.execute(
                sa.update(SigningKeyRow)
                .where(SigningKeyRow.status == "active")
                .values(status="retired", retired_at=now)
            )
            await session.execute(
                sa.delete(SigningKeyRow).where(
                    SigningKeyRow.status == "retired",
                    SigningKeyRow.retired_at < now - self.access_ttl - PUBLISH_MARGIN,
                )
            )
            row = self._new_row()
            session.add(row)
        self._snapshot = None
        log.info("rotated signing keys: %s is now active", row.kid)
        return row.kid

    async def _load(self) -> _Snapshot:
        cutoff = utcnow() - self.access_ttl - PUBLISH_MARGIN
        async with self.database.transaction() as session:
            rows = (
                await session.scalars(
                    sa.select(SigningKeyRow).where(
                        (SigningKeyRow.status == "active") | (SigningKeyRow.retired_at >= cutoff)
                    )
                )
            ).all()
        active = [row for row in rows if row.status == "active"]
        if not active:
            raise RuntimeError("no active signing key; start-up creates one")
        newest = max(active, key=lambda row: row.created_at)
        private = self.encryption.open(newest.private_key, newest.encryption, newest.kid)
        signing = _import_private(json.loads(private))
        snapshot = _Snapshot(
            signing=signing,
            public={row.kid: row.public_jwk for row in rows},
            loaded_at=time.monotonic(),
        )
        self._snapshot = snapshot
        return snapshot

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.loaded_at < self.cache_seconds:
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and time.monotonic() - snapshot.loaded_at < self.cache_seconds:
                return snapshot
            return await self._load()

    async def signing_key(self) -> SigningKey:
        return (await self._current()).signing

    async def jwks(self) -> dict[str, Any]:
        # Read afresh: a key another replica just rotated in must be published at once, or
        # verifiers meeting its kid would fetch a JWKS without it.
        async with self._lock:
            snapshot = await self._load()
        return {"keys": [dict(jwk) for _, jwk in sorted(snapshot.public.items())]}

    async def public_key(self, kid: str) -> SigningKey:
        snapshot = await self._current()
        jwk = snapshot.public.get(kid)
        if jwk is None and time.monotonic() - self._last_unknown_reload > 1.0:
            # Another replica may have rotated; look again, at most once a second.
            self._last_unknown_reload = time.monotonic()
            async with self._lock:
                snapshot = await self._load()
            jwk = snapshot.public.get(kid)
        if jwk is None:
            raise UnknownKeyError(kid)
        public = {k: v for k, v in jwk.items() if k != "d"}
        key: SigningKey = (
            OKPKey.import_key(public) if public.get("kty") == "OKP" else ECKey.import_key(public)
        )
        return key


class DatabaseKeySource:
    """servicekit ``KeySource`` over the key store: identity verifies its own tokens without
    calling its own JWKS endpoint."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    async def get_key(self, kid: str) -> SigningKey:
        return await self._keys.public_key(kid)
