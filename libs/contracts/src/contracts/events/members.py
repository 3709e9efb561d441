"""Events of the members service."""

from __future__ import annotations

from uuid import UUID

from contracts.registry import EventPayload, event


@event(type="members.member.created", version=1)
class MemberCreated(EventPayload):
    member_id: UUID
    level: str | None = None


@event(type="members.points.awarded", version=1)
class PointsAwarded(EventPayload):
    member_id: UUID
    order_id: UUID
    points: int
    balance: int


@event(type="members.points.reversed", version=1)
class PointsReversed(EventPayload):
    member_id: UUID
    order_id: UUID
    refund_id: UUID
    points: int
    balance: int
