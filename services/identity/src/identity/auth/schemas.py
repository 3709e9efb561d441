"""Sign-in, token and password-reset requests and responses."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field, model_validator

from identity.common.validation import Password, Phone
from identity.verification.schemas import CodeField


class LoginRequest(BaseModel):
    phone: Phone
    password: str | None = Field(default=None, max_length=128)
    code: str | None = Field(default=None, pattern=r"^\d{6}$", description="A login code.")
    merchant_code: str | None = Field(default=None, max_length=16)
    store_code: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _one_of(self) -> LoginRequest:
        if (self.password is None) == (self.code is None):
            raise ValueError("give either a password or a login code")
        if self.merchant_code is None and self.store_code is None:
            raise ValueError("give the merchant code or the store code")
        return self


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class PasswordResetRequest(BaseModel):
    phone: Phone
    code: str = CodeField
    new_password: Password
    merchant_code: str | None = Field(
        default=None,
        max_length=16,
        description="Reset only this merchant's account; by default every account of the phone.",
    )


class JwksOut(BaseModel):
    keys: list[dict[str, object]]


class MeStore(BaseModel):
    id: uuid.UUID
    code: str
    name: str
