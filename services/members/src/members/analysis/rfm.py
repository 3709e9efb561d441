"""RFM scores and segments: recency, frequency and monetary value, each scored 1 (weak) to 5
(strong) on fixed cut points, then one of eight segments.

Fixed cut points rather than quintiles: a member's segment depends on their own visits only,
not on how the other members behave, so a tag rule built on it (``segment ==
"important_value"``) gives the same answer for the same member tomorrow, and the figures
can be checked by hand.

Default cut points (a member's visits in the caller's stores, fully refunded orders left out):

=====  ============================  ======================  ==========================
Score  Recency: days since the last  Frequency: visits in    Monetary: net spend in the
       visit (as of the given day)   the window (365 days)   window, minor units
=====  ============================  ======================  ==========================
5      0-7                           20 or more              500000 or more (5000.00)
4      8-30                          10-19                   200000-499999
3      31-90                         5-9                     50000-199999
2      91-180                        2-4                     10000-49999
1      over 180, or never            0-1                     under 10000 (100.00)
=====  ============================  ======================  ==========================

A score of 3 or more is *high*. The segment names the highs (the usual eight of Chinese
member marketing, 重要价值客户 and the rest):

=================================  ====  ====  ====
Segment                            R     F     M
=================================  ====  ====  ====
``important_value`` 重要价值客户   high  high  high
``important_development`` 重要发展  high  low   high
``important_retention`` 重要保持    low   high  high
``important_winback`` 重要挽留      low   low   high
``general_value`` 一般价值          high  high  low
``general_development`` 一般发展    high  low   low
``general_retention`` 一般保持      low   high  low
``general_winback`` 一般挽留        low   low   low
=================================  ====  ====  ====
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Segment = Literal[
    "important_value",
    "important_development",
    "important_retention",
    "important_winback",
    "general_value",
    "general_development",
    "general_retention",
    "general_winback",
]

SEGMENTS: Final[dict[tuple[bool, bool, bool], Segment]] = {
    (True, True, True): "important_value",
    (True, False, True): "important_development",
    (False, True, True): "important_retention",
    (False, False, True): "important_winback",
    (True, True, False): "general_value",
    (True, False, False): "general_development",
    (False, True, False): "general_retention",
    (False, False, False): "general_winback",
}

SEGMENT_NAMES_ZH: Final[dict[Segment, str]] = {
    "important_value": "重要价值客户",
    "important_development": "重要发展客户",
    "important_retention": "重要保持客户",
    "important_winback": "重要挽留客户",
    "general_value": "一般价值客户",
    "general_development": "一般发展客户",
    "general_retention": "一般保持客户",
    "general_winback": "一般挽留客户",
}

HIGH: Final = 3


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """Cut points, strongest first: the score is 5 for the first threshold met, 4 for the
    second, and so on, 1 when none is met."""

    #: Most days since the last visit for scores 5, 4, 3, 2.
    recency_days: tuple[int, int, int, int] = (7, 30, 90, 180)
    #: Fewest visits in the window for scores 5, 4, 3, 2.
    frequency: tuple[int, int, int, int] = (20, 10, 5, 2)
    #: Least net spend in the window (minor units) for scores 5, 4, 3, 2.
    monetary: tuple[int, int, int, int] = (500_000, 200_000, 50_000, 10_000)
    #: Days (ending on the day scored) frequency and monetary count.
    window_days: int = 365


DEFAULT_CUTS: Final = RfmCuts()


@dataclass(frozen=True, slots=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int
    segment: Segment

    @property
    def code(self) -> str:
        """``"543"``: the three scores, as RFM is usually written."""
        return f"{self.recency}{self.frequency}{self.monetary}"


def _score_at_most(value: int, cuts: tuple[int, ...]) -> int:
    for index, cut in enumerate(cuts):
        if value <= cut:
            return 5 - index
    return 1


def _score_at_least(value: int, cuts: tuple[int, ...]) -> int:
    for index, cut in enumerate(cuts):
        if value >= cut:
            return 5 - index
    return 1


def rfm_segment(
    recency_days: int | None, frequency: int, monetary: int, cuts: RfmCuts = DEFAULT_CUTS
) -> Rfm:
    """Scores and segment of a member who last visited ``recency_days`` ago (``None``: never),
    visited ``frequency`` times and spent ``monetary`` minor units (net of refunds) in the
    window."""
    recency = 1 if recency_days is None else _score_at_most(recency_days, cuts.recency_days)
    frequency_score = _score_at_least(frequency, cuts.frequency)
    monetary_score = _score_at_least(monetary, cuts.monetary)
    segment = SEGMENTS[(recency >= HIGH, frequency_score >= HIGH, monetary_score >= HIGH)]
    return Rfm(recency, frequency_score, monetary_score, segment)
