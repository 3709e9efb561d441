"""Verification code requests and responses."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from identity.common.validation import Phone


class Purpose(StrEnum):
    SIGNUP = "signup"
    LOGIN = "login"
    PASSWORD_RESET = "password_reset"
    ADMIN_HANDOVER = "admin_handover"
    PHONE_CHANGE = "phone_change"
    ACCOUNT_DEACTIVATION = "account_deactivation"


#: Purposes that need a signed-in caller.
AUTHENTICATED_PURPOSES = frozenset(
    {Purpose.ADMIN_HANDOVER, Purpose.PHONE_CHANGE, Purpose.ACCOUNT_DEACTIVATION}
)

CodeField = Field(pattern=r"^\d{6}$", description="The 6-digit code received by text message.")


class CodeRequest(BaseModel):
    phone: Phone
    purpose: Purpose


class CodeIssued(BaseModel):
    expires_in: int = Field(description="Seconds the code stays valid.")
    resend_after: int = Field(description="Seconds before another code can be requested.")


class SentCodeOut(BaseModel):
    phone: str
    purpose: str
    code: str
