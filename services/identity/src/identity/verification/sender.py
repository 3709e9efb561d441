"""How verification codes reach phones: the :class:`CodeSender` interface and the local one.

Production sends them by SMS (:mod:`identity.verification.aliyun`); the local stack's
:class:`LogCodeSender` writes each code to the service log and, only when
``IDENTITY_DEV_CODE_ENDPOINT`` is on, keeps the last ones for ``GET /v1/dev/verification-codes``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.envelope import utcnow

log = logging.getLogger(__name__)


class CodeSender(Protocol):
    async def send(self, phone: str, purpose: str, code: str) -> None:
        """Deliver ``code`` to ``phone``; raising makes the request fail and no code is kept."""
        ...


@dataclass(frozen=True)
class SentCode:
    phone: str
    purpose: str
    code: str
    sent_at: datetime


class LogCodeSender:
    """Writes codes to the log (local development); optionally remembers the recent ones."""

    def __init__(self, *, keep: bool = False, capacity: int = 200) -> None:
        self.keep = keep
        self.sent: deque[SentCode] = deque(maxlen=capacity)

    async def send(self, phone: str, purpose: str, code: str) -> None:
        log.warning("verification code for %s (%s): %s", phone, purpose, code)
        if self.keep:
            self.sent.append(SentCode(phone, purpose, code, utcnow()))

    def recent(self, phone: str | None = None) -> list[SentCode]:
        return [sent for sent in reversed(self.sent) if phone is None or sent.phone == phone]
