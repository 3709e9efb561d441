"""Authentication and tenant scoping: verify identity's JWTs locally and know who is calling.

Identity signs short-lived access tokens with an asymmetric key (EdDSA or ES256) and publishes
the public keys at its JWKS endpoint. Every service verifies tokens on its own with
:class:`TokenVerifier`, turns the claims into a :class:`Principal`, and scopes every query to
the caller's merchant and stores (:func:`scoped`). The signing functions live here too, so
identity issues tokens with the very code the services verify them with.

Claims: ``sub`` staff id, ``mid`` merchant id, ``role``, ``scp`` space-separated scopes,
``sto`` store ids (absent: every store of the merchant), ``rgn`` region ids, ``jti``,
``exp``, ``iat``, ``iss``, ``aud``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Protocol, TypeVar, cast

import httpx
from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import Delete, Select, Update

from servicekit.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

#: The only signature algorithms accepted. Everything else (``none``, HMAC, RSA) is refused
#: before a key is even looked up, which rules out algorithm-confusion attacks.
ALLOWED_ALGORITHMS: Final = frozenset({"EdDSA", "ES256"})

SigningKey = OKPKey | ECKey

_MAX_TOKEN_LENGTH: Final = 8192
_ACCEPTED_TYPES: Final = frozenset({"jwt", "at+jwt", "application/at+jwt"})


class Role(StrEnum):
    HQ_ADMIN = "hq_admin"
    REGIONAL_MANAGER = "regional_manager"
    STORE_MANAGER = "store_manager"
    CASHIER = "cashier"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: a staff member acting for one merchant."""

    subject: uuid.UUID
    merchant_id: uuid.UUID
    role: Role
    scopes: frozenset[str]
    #: The stores the caller may see; ``None`` means every store of the merchant.
    store_ids: frozenset[uuid.UUID] | None
    token_id: str
    expires_at: datetime
    region_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def can_see_store(self, store_id: uuid.UUID) -> bool:
        return self.store_ids is None or store_id in self.store_ids


# --- keys ----------------------------------------------------------------------------------


class KeySource(Protocol):
    """Where a verifier finds the public key named by a token's ``kid``."""

    async def get_key(self, kid: str) -> SigningKey:
        """The key, or :class:`UnknownKeyError` / :class:`KeySourceUnavailable`."""
        ...


class UnknownKeyError(LookupError):
    """No published key has this ``kid``."""


class KeySourceUnavailable(RuntimeError):
    """The JWKS could not be fetched and no earlier copy is at hand."""


def _import_public_keys(jwks: Mapping[str, Any]) -> dict[str, SigningKey]:
    """The usable signature keys of a JWKS document by ``kid``; others are skipped."""
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ValueError("a JWKS needs a 'keys' array")
    keys: dict[str, SigningKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        # Import only the public members, even if a private key was published by mistake.
        public = {k: v for k, v in entry.items() if k != "d"}
        try:
            key: SigningKey
            if public.get("kty") == "OKP" and public.get("crv") in ("Ed25519", "Ed448"):
                key = OKPKey.import_key(public)
            elif public.get("kty") == "EC" and public.get("crv") == "P-256":
                key = ECKey.import_key(public)
            else:
                continue
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("skipping an unusable JWKS key %r: %s", entry.get("kid"), exc)
            continue
        key.ensure_kid()
        assert key.kid is not None
        keys[key.kid] = key
    return keys


class StaticKeySource:
    """A fixed JWKS: for tests, and for identity verifying its own tokens."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _import_public_keys(jwks)

    async def get_key(self, kid: str) -> SigningKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKeyError(kid) from None


class JwksKeySource:
    """Identity's JWKS fetched over HTTP and cached for ``cache_seconds``.

    A token with an unknown ``kid`` (identity rotated its key) triggers a refresh, but at most
    one per ``min_refresh_interval`` seconds, so a flood of made-up ``kid`` values cannot turn
    into a flood of requests to identity. When a refresh fails the previous keys stay in use.
    """

    def __init__(
        self,
        url: str,
        cache_seconds: float = 300.0,
        http_client: httpx.AsyncClient | None = None,
        *,
        min_refresh_interval: float = 10.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh_interval = min_refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._client = http_client
        self._owns_client = http_client is None
        self._keys: dict[str, SigningKey] | None = None
        self._fresh_until = 0.0
        self._last_attempt: float | None = None
        self._last_unknown_kid_fetch: float | None = None
        self._lock = asyncio.Lock()
        #: Number of fetches attempted, for metrics and tests.
        self.fetch_count = 0

    async def get_key(self, kid: str) -> SigningKey:
        now = self._clock()
        if self._keys is None or now >= self._fresh_until:
            await self._refresh(stale=True)
            if self._keys is None:
                raise KeySourceUnavailable(f"no JWKS from {self.url} yet")
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(stale=False)
            key = (self._keys or {}).get(kid)
        if key is None:
            raise UnknownKeyError(kid)
        return key

    async def refresh(self) -> None:
        """Fetch the JWKS now, regardless of the cache and the rate limit."""
        async with self._lock:
            await self._fetch()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _refresh(self, *, stale: bool) -> None:
        generation = self.fetch_count
        async with self._lock:
            if self.fetch_count != generation:
                return  # another request fetched while this one waited for the lock
            now = self._clock()
            if stale:
                if self._keys is not None and now < self._fresh_until:
                    return
                # After a failed fetch, wait before the next one.
                if (
                    self._last_attempt is not None
                    and now - self._last_attempt < self.min_refresh_interval
                ):
                    return
            else:
                if (
                    self._last_unknown_kid_fetch is not None
                    and now - self._last_unknown_kid_fetch < self.min_refresh_interval
                ):
                    return
                self._last_unknown_kid_fetch = now
            try:
                await self._fetch()
            except KeySourceUnavailable:
                if self._keys is None:
                    raise
                log.warning("JWKS refresh from %s failed; keeping the cached keys", self.url)

    async def _fetch(self) -> None:
        self._last_attempt = self._clock()
        self.fetch_count += 1
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = _import_public_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise KeySourceUnavailable(f"cannot load JWKS from {self.url}: {exc}") from exc
        self._keys = keys
        self._fresh_until = self._clock() + self.cache_seconds


# --- signing -------------------------------------------------------------------------------


def _algorithm_of(key: SigningKey) -> str:
    if isinstance(key, OKPKey) and key.curve_name in ("Ed25519", "Ed448"):
        return "EdDSA"
    if isinstance(key, ECKey) and key.curve_name == "P-256":
        return "ES256"
    raise ValueError(f"unsupported signing key: {key.key_type} {key.curve_name}")


def generate_signing_key(alg: str = "EdDSA") -> SigningKey:
    """A new private signing key for ``EdDSA`` (Ed25519) or ``ES256`` (P-256), with its
    ``kid`` set to the RFC 7638 thumbprint."""
    parameters: dict[str, Any] = {"alg": alg, "use": "sig"}
    key: SigningKey
    if alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", parameters, auto_kid=True)  # type: ignore[arg-type]
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters, auto_kid=True)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; use one of {sorted(ALLOWED_ALGORITHMS)}")
    return key


def public_jwks(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The JWKS document publishing the public half of ``keys``."""
    published: list[dict[str, Any]] = []
    for key in keys:
        key.ensure_kid()
        published.append(dict(key.as_dict(private=False)))
    return {"keys": published}


def sign_token(key: SigningKey, claims: Mapping[str, Any], kid: str | None = None) -> str:
    """A compact JWS of ``claims`` signed with ``key`` (``kid`` defaults to the key's)."""
    alg = _algorithm_of(key)
    key.ensure_kid()
    header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as superseded by RFC 9864's "Ed25519"; it is still what every
        # JOSE library verifies, so the warning is noise here.
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, dict(claims), key, algorithms=[alg])


def principal_claims(
    principal: Principal, *, issuer: str, audience: str | list[str], issued_at: datetime
) -> dict[str, Any]:
    """The claims that :class:`TokenVerifier` turns back into ``principal``."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(principal.subject),
        "mid": str(principal.merchant_id),
        "role": principal.role.value,
        "scp": " ".join(sorted(principal.scopes)),
        "jti": principal.token_id,
        "iat": int(issued_at.timestamp()),
        "exp": int(principal.expires_at.timestamp()),
    }
    if principal.store_ids is not None:
        claims["sto"] = sorted(str(store_id) for store_id in principal.store_ids)
    if principal.region_ids:
        claims["rgn"] = sorted(str(region_id) for region_id in principal.region_ids)
    return claims


# --- verification --------------------------------------------------------------------------


class _InvalidToken(Exception):
    """Any reason a token is refused; turned into one 401 so the reason is never disclosed."""


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise _InvalidToken("undecodable token header") from exc


def _uuid_claim(claims: Mapping[str, Any], name: str) -> uuid.UUID:
    value = claims.get(name)
    if not isinstance(value, str):
        raise _InvalidToken(f"claim {name!r} is missing")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _InvalidToken(f"claim {name!r} is not a UUID") from None


def _uuid_list_claim(claims: Mapping[str, Any], name: str) -> frozenset[uuid.UUID] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _InvalidToken(f"claim {name!r} must be a list of UUIDs")
    try:
        return frozenset(uuid.UUID(item) for item in value)
    except ValueError:
        raise _InvalidToken(f"claim {name!r} must be a list of UUIDs") from None


#: Verified tokens remembered per verifier: the tokens of the tills served at once.
_REMEMBERED_TOKENS: Final = 4096


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires: float
    kid: str
    key: SigningKey


class TokenVerifier:
    """Verifies access tokens and turns their claims into a :class:`Principal`.

    Every failure becomes a 401 problem (``invalid_token`` or ``token_expired``); a JWKS that
    cannot be fetched at all is a 503, since the token itself may be fine.
    """

    def __init__(
        self,
        key_source: KeySource,
        issuer: str,
        audience: str,
        *,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_source = key_source
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._clock = clock
        # A till sends the same token with every request: the signature and claims of a token
        # already verified are not checked again until it expires (see _remembered).
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        try:
            return await self._verify(token)
        except _InvalidToken as exc:
            log.info("rejected access token: %s", exc)
            raise Unauthorized("The access token is invalid.", code="invalid_token") from None
        except ExpiredTokenError:
            raise Unauthorized("The access token has expired.", code="token_expired") from None
        except KeySourceUnavailable as exc:
            log.error("cannot verify access tokens: %s", exc)
            raise ServiceUnavailable(
                "Access tokens cannot be verified right now.",
                code="auth_unavailable",
                retry_after=5,
            ) from None

    async def _verify(self, token: str) -> Principal:
        remembered = await self._remembered(token)
        if remembered is not None:
            return remembered
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise _InvalidToken("empty or oversized token")
        segments = token.split(".")
        if len(segments) != 3:
            raise _InvalidToken("not a compact JWS")
        header = _b64url_json(segments[0])
        if not isinstance(header, dict):
            raise _InvalidToken("token header is not an object")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _InvalidToken(f"algorithm {alg!r} is not accepted")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES):
            raise _InvalidToken(f"token type {typ!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _InvalidToken("token names no key")
        try:
            key = await self.key_source.get_key(kid)
        except UnknownKeyError:
            raise _InvalidToken(f"unknown key {kid!r}") from None
        # The key decides the algorithm, never the token: an Ed25519 key only verifies EdDSA.
        if _algorithm_of(key) != alg or (key.alg is not None and key.alg != alg):
            raise _InvalidToken(f"key {kid!r} does not sign {alg}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                decoded = jwt.decode(token, key, algorithms=[alg])
        except JoseError as exc:
            raise _InvalidToken(f"signature: {exc}") from None
        except ValueError as exc:
            raise _InvalidToken(f"malformed token: {exc}") from None
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise
        except JoseError as exc:
            raise _InvalidToken(f"claims: {exc}") from None
        principal = self._principal(claims)
        self._remember(token, _Verified(principal, float(claims["exp"]), kid, key))
        return principal

    async def _remembered(self, token: str) -> Principal | None:
        """The principal of a token verified before, while it is unexpired and signed by a
        key the key source still holds (a key withdrawn from the JWKS ends it at once)."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        if self._clock() > entry.expires + self.leeway:
            del self._verified[token]
            raise ExpiredTokenError("exp")
        try:
            key = await self.key_source.get_key(entry.kid)
        except UnknownKeyError:
            key = None
        if key is not entry.key:
            self._verified.pop(token, None)
            return None  # verified afresh against the key source's current keys
        self._verified.move_to_end(token)
        return entry.principal

    def _remember(self, token: str, entry: _Verified) -> None:
        self._verified[token] = entry
        self._verified.move_to_end(token)
        while len(self._verified) > _REMEMBERED_TOKENS:
            self._verified.popitem(last=False)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        try:
            role = Role(str(claims.get("role")))
        except ValueError:
            raise _InvalidToken(f"unknown role {claims.get('role')!r}") from None
        scope_claim = claims.get("scp", "")
        if not isinstance(scope_claim, str):
            raise _InvalidToken("claim 'scp' must be a space-separated string")
        return Principal(
            subject=_uuid_claim(claims, "sub"),
            merchant_id=_uuid_claim(claims, "mid"),
            role=role,
            scopes=frozenset(scope_claim.split()),
            store_ids=_uuid_list_claim(claims, "sto"),
            region_ids=_uuid_list_claim(claims, "rgn") or frozenset(),
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
        )


# --- FastAPI dependencies ------------------------------------------------------------------

_PRINCIPAL_STATE = "principal"


async def get_principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; verified once per request."""
    cached = getattr(request.state, _PRINCIPAL_STATE, None)
    if isinstance(cached, Principal):
        return cached
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("A bearer token is required.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required.")
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("app.state.token_verifier is not set")
    principal = await verifier.verify(token.strip())
    setattr(request.state, _PRINCIPAL_STATE, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency answering 403 ``forbidden`` unless the caller holds ``scope``.

    ``Depends(require("orders:write"))`` in ``dependencies=[...]`` or as a parameter type;
    it yields the principal.
    """

    async def dependency(principal: PrincipalDep) -> Principal:
        if not principal.has(scope):
            raise Forbidden(
                f"This action requires the '{scope}' permission.", missing_permission=scope
            )
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_').replace('.', '_')}"
    return dependency


def require_any(*scopes: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Like :func:`require`, satisfied by any one of ``scopes``.

    For an action that a narrow scope grants on its own and a broader one includes (signing a
    member up at the till is part of changing member accounts). Name the narrowest scope first:
    the 403 reports it as the permission to ask for.
    """
    if not scopes:
        raise ValueError("require_any needs at least one scope")
    wanted = tuple(scopes)

    async def dependency(principal: PrincipalDep) -> Principal:
        if not any(principal.has(scope) for scope in wanted):
            listed = "' or '".join(wanted)
            raise Forbidden(
                f"This action requires the '{listed}' permission.",
                missing_permission=wanted[0],
                any_of_permissions=list(wanted),
            )
        return principal

    dependency.__name__ = "require_any_" + "_".join(
        scope.replace(":", "_").replace(".", "_") for scope in wanted
    )
    return dependency


def require_store_access(principal: Principal, store_id: uuid.UUID) -> None:
    """404 when ``store_id`` is outside what the caller may see: a 403 would confirm the
    store exists."""
    if not principal.can_see_store(store_id):
        raise NotFound("Store not found.")


# Bound rather than constrained, so the statement's own row type survives the scoping.
_Statement = TypeVar("_Statement", bound=Select[*tuple[Any, ...]] | Update | Delete)


def _column(model: Any, name: str) -> Any:
    columns = getattr(model, "c", None)
    if columns is not None and not hasattr(model, "__mapper__"):
        return columns.get(name)
    return getattr(model, name, None)


def scoped_to_merchant(stmt: _Statement, model: Any, merchant_id: uuid.UUID) -> _Statement:
    """Restrict ``stmt`` to one merchant's rows: for code acting on a merchant's behalf without
    a caller, such as an event handler scoping by the envelope's merchant."""
    merchant_column = _column(model, "merchant_id")
    if merchant_column is None:
        raise ValueError(f"{model!r} has no merchant_id column to scope by")
    return cast(_Statement, stmt.where(merchant_column == merchant_id))


def scoped(stmt: _Statement, model: Any, principal: Principal) -> _Statement:
    """Restrict ``stmt`` to the caller's merchant and, for rows with a ``store_id``, to the
    caller's stores. ``model`` is a mapped class or a ``Table``."""
    stmt = scoped_to_merchant(stmt, model, principal.merchant_id)
    store_column = _column(model, "store_id")
    if store_column is not None and principal.store_ids is not None:
        stmt = cast(_Statement, stmt.where(store_column.in_(sorted(principal.store_ids))))
    return stmt
