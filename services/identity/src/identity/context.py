"""What identity's routes share at run time: settings, password hasher, keys, code sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from identity.auth.keys import KeyStore
from identity.common.passwords import Passwords
from identity.config import Settings
from identity.verification.sender import CodeSender


@dataclass
class Identity:
    settings: Settings
    passwords: Passwords
    keys: KeyStore
    sender: CodeSender

    @property
    def access_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.access_token_ttl_seconds)


def get_identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


IdentityDep = Annotated[Identity, Depends(get_identity)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientIpDep = Annotated[str | None, Depends(client_ip)]
