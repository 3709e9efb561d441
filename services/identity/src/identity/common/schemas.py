"""Request fragments several domains share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VersionedUpdate(BaseModel):
    """An update of a versioned resource: the ``version`` the client last read."""

    model_config = ConfigDict(extra="forbid")

    # Optional in the schema so that a missing version gets its own answer (428
    # ``version_required``) rather than a generic validation failure.
    version: int | None = Field(
        default=None,
        ge=1,
        description="Required: the version you read. Missing: 428; stale: 409.",
    )


class VersionOnly(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None,
        ge=1,
        description="Required: the version you read. Missing: 428; stale: 409.",
    )
