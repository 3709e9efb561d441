"""Request fragments several domains share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VersionedUpdate(BaseModel):
    """An update of a versioned resource: the ``version`` the client last read."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version you read; a stale one gets 409.")


class VersionOnly(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, description="When given, refused with 409 if stale."
    )
