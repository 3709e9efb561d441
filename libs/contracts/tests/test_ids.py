"""UUIDv7 identifiers: layout bits, embedded time and creation ordering."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from contracts import ids
from contracts.ids import id_timestamp_ms, new_id


def test_version_and_variant_bits() -> None:
    for _ in range(1000):
        value = new_id()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 0x7
        assert (value.int >> 62) & 0b11 == 0b10


def test_timestamp_is_now() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    # The counter may borrow a millisecond ahead when a burst exhausts it.
    assert before <= id_timestamp_ms(value) <= after + 1


def test_strictly_increasing_within_a_process() -> None:
    values = [new_id() for _ in range(50_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert len(set(values)) == len(values)
    # Ordering holds for the canonical string form too, which is what text columns sort on.
    strings = [str(v) for v in values]
    assert strings == sorted(strings)


def test_ordering_survives_counter_exhaustion(monkeypatch: pytest.MonkeyPatch) -> None:
    # Freeze the clock: every id falls into the same millisecond, so the 12-bit counter runs
    # out and the generator must move to the next millisecond rather than wrap around.
    frozen_ns = time.time_ns()
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: frozen_ns))
    values = [new_id() for _ in range(3 * 4096)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert id_timestamp_ms(values[-1]) > frozen_ns // 1_000_000


def test_ordering_survives_a_clock_going_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_id()
    earlier_ns = time.time_ns() - 5_000_000_000
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: earlier_ns))
    second = new_id()
    assert first < second


def test_unique_and_ordered_per_thread_across_threads() -> None:
    results: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def work(out: list[uuid.UUID]) -> None:
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [v for out in results for v in out]
    assert len(set(everything)) == len(everything)
    for out in results:
        assert out == sorted(out)


def test_id_timestamp_refuses_other_versions() -> None:
    with pytest.raises(ValueError, match="UUIDv7"):
        id_timestamp_ms(uuid.uuid4())
