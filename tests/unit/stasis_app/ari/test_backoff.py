"""Reconnect backoff: exponential growth, cap, and jitter bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stasis_app.ari.aioari_connection import backoff_delay


def test_ceiling_doubles_from_initial_up_to_max() -> None:
    ceilings = [backoff_delay(n, 0.2, 5.0, rand=lambda: 1.0) for n in range(8)]
    assert ceilings == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_jitter_floor_is_half_the_ceiling() -> None:
    floors = [backoff_delay(n, 0.2, 5.0, rand=lambda: 0.0) for n in range(8)]
    assert floors == [0.1, 0.2, 0.4, 0.8, 1.6, 2.5, 2.5, 2.5]


def test_huge_attempt_numbers_stay_capped() -> None:
    assert backoff_delay(10_000, 0.2, 5.0, rand=lambda: 1.0) == 5.0


@given(
    attempt=st.integers(min_value=0, max_value=200),
    initial=st.floats(min_value=0.001, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_is_within_half_ceiling_and_ceiling(attempt: int, initial: float, extra: float, r: float) -> None:
    maximum = initial + extra
    ceiling = min(maximum, initial * 2.0 ** min(attempt, 64))
    delay = backoff_delay(attempt, initial, maximum, rand=lambda: r)
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= maximum


def test_default_jitter_spreads_delays() -> None:
    delays = {backoff_delay(3, 0.2, 5.0) for _ in range(50)}
    assert len(delays) > 40  # random.random: not lockstep
    assert all(0.8 <= d <= 1.6 for d in delays)
