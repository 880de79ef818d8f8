"""Per-queue counters behind QueueStats (app_queue's Completed / Abandoned / Holdtime / SL)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.queue.ewt import ewma_update

__all__ = ["QueueCounters"]


@dataclass(slots=True)
class QueueCounters:
    """Mutable counters of one queue; reset when the queue is deleted."""

    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_within: int = 0
    timed_out: int = 0
    answered_wait_total: float = 0.0
    talk_total: float = 0.0
    talk_count: int = 0
    holdtime_ewma: float = 0.0
    last_arrival: float | None = None
    interarrival_ewma: float | None = None

    def on_arrival(self, now: float) -> None:
        """A caller joined: feed the arrival-rate estimate used by Erlang C."""
        if self.last_arrival is not None:
            gap = max(0.0, now - self.last_arrival)
            self.interarrival_ewma = gap if self.interarrival_ewma is None else ewma_update(self.interarrival_ewma, gap)
        self.last_arrival = now

    def on_answer(self, wait: float, service_level: float) -> None:
        """A caller was connected after `wait` seconds."""
        self.answered += 1
        self.answered_wait_total += wait
        if wait <= service_level:
            self.answered_within += 1
        self.holdtime_ewma = ewma_update(self.holdtime_ewma, wait)

    def on_answer_undone(self, wait: float, service_level: float) -> None:
        """An answer counted by on_answer whose call failed before it started (it is answered again
        later, or leaves, and is counted then)."""
        self.answered = max(0, self.answered - 1)
        self.answered_wait_total = max(0.0, self.answered_wait_total - wait)
        if wait <= service_level and self.answered_within:
            self.answered_within -= 1

    def on_abandon(self, wait: float, service_level: float) -> None:
        """A caller hung up (or its node was lost) while waiting or ringing: app_queue's ABANDON."""
        self.abandoned += 1
        if wait <= service_level:
            self.abandoned_within += 1

    def on_talk(self, seconds: float) -> None:
        """A connected call ended after `seconds` of talk."""
        self.talk_total += max(0.0, seconds)
        self.talk_count += 1

    @property
    def arrival_rate(self) -> float | None:
        """Callers per second, or None before two arrivals (or with zero gaps)."""
        if not self.interarrival_ewma:
            return None
        return 1.0 / self.interarrival_ewma

    @property
    def aht(self) -> float | None:
        """Mean talk time, or None before the first call ended."""
        return self.talk_total / self.talk_count if self.talk_count else None

    def sl_pct(self) -> float:
        """Answered within the threshold / answered x 100."""
        return 100.0 * self.answered_within / self.answered if self.answered else 0.0

    def sl2_pct(self) -> float:
        """(Answered + abandoned within the threshold) / (answered + abandoned) x 100."""
        total = self.answered + self.abandoned
        return 100.0 * (self.answered_within + self.abandoned_within) / total if total else 0.0

    def asa(self) -> float:
        """Mean wait of answered callers."""
        return self.answered_wait_total / self.answered if self.answered else 0.0

    def avg_talk(self) -> float:
        """Mean talk time of ended calls."""
        return self.talk_total / self.talk_count if self.talk_count else 0.0
