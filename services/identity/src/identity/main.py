"""The identity service: merchants, stores, regions, staff, roles, sign-in and tokens.

``create_app`` is its only wiring.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI

from identity.audit.router import router as audit_router
from identity.auth.keys import DatabaseKeySource, KeyStore
from identity.auth.router import router as auth_router
from identity.common.crypto import KeyEncryption
from identity.common.passwords import Passwords
from identity.config import Settings
from identity.context import Identity
from identity.handover.router import router as handover_router
from identity.merchants.router import router as merchants_router
from identity.regions.router import router as regions_router
from identity.seed import seed_demo
from identity.staff.router import router as staff_router
from identity.stores.router import router as stores_router
from identity.verification.aliyun import AliyunSmsSender
from identity.verification.router import dev_router
from identity.verification.router import router as verification_router
from identity.verification.sender import CodeSender, LogCodeSender
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER, Runtime
from servicekit.app import create_app as build_app
from servicekit.auth import TokenVerifier
from servicekit.bus.factory import Bus

log = logging.getLogger(__name__)

PUBLISHES = ("identity.merchant", "identity.store", "identity.staff")


def key_store(settings: Settings) -> KeyStore:
    secret = settings.key_encryption_key
    return KeyStore(
        KeyEncryption(secret.get_secret_value() if secret is not None else None),
        algorithm=settings.signing_algorithm,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        cache_seconds=settings.key_cache_seconds,
    )


def code_sender_for(settings: Settings) -> CodeSender:
    """The sender ``IDENTITY_CODE_SENDER`` names, built from its settings."""
    if settings.code_sender == "aliyun":
        secret = settings.aliyun_sms_access_key_secret
        return AliyunSmsSender(
            access_key_id=settings.aliyun_sms_access_key_id or "",
            access_key_secret=secret.get_secret_value() if secret is not None else "",
            sign_name=settings.aliyun_sms_sign_name or "",
            template_code=settings.aliyun_sms_template_code or "",
            endpoint=settings.aliyun_sms_endpoint,
            timeout=settings.aliyun_sms_timeout_seconds,
        )
    return LogCodeSender(keep=settings.dev_code_endpoint)


def create_app(
    settings: Settings | None = None,
    *,
    bus: Bus | None = None,
    code_sender: CodeSender | None = None,
) -> FastAPI:
    settings = settings or Settings()
    settings.check_production()
    keys = key_store(settings)
    identity = Identity(
        settings=settings,
        passwords=Passwords(settings),
        keys=keys,
        sender=code_sender or code_sender_for(settings),
    )

    async def start(runtime: Runtime) -> None:
        keys.bind(runtime.database)
        if not keys.encryption.enabled:
            log.warning("IDENTITY_KEY_ENCRYPTION_KEY is not set: signing keys are stored in clear")
        await keys.ensure_active()
        if settings.seed_demo:
            await seed_demo(identity, runtime)

    routers = [
        auth_router,
        verification_router,
        merchants_router,
        stores_router,
        regions_router,
        staff_router,
        handover_router,
        audit_router,
    ]
    if settings.dev_code_endpoint:
        routers.append(dev_router)
    app = build_app(
        settings,
        title="Countertop Identity",
        routers=routers,
        publishes=PUBLISHES,
        bus=bus,
        token_verifier=TokenVerifier(
            DatabaseKeySource(keys), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
        ),
        on_startup=[start],
    )
    app.state.identity = identity
    return app
