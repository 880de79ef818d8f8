"""Estimated wait time (EWT).

- "ewma" (default, app_queue): holdtime = (3*old + new)/4 on each answer, new = that caller's wait;
  EWT = max(0, holdtime - already waited).
- "erlang_c": with N agents logged in and not paused, AHT the mean talk time and lambda the arrival rate
  (1 / EWMA of join gaps), A = lambda*AHT and P_wait = Erlang C (anchors section 6). A caller at position p
  needs p agent releases; while all N agents are busy releases come at rate N/AHT, so
  EWT(p) = P_wait * p * AHT / N, with P_wait = 1 when A >= N or lambda is unknown. Falls back to ewma
  when N = 0 or no call has ended yet (AHT unknown).
"""

from __future__ import annotations

__all__ = ["erlang_c_pwait", "erlang_c_wait", "ewma_update", "ewma_wait"]


def ewma_update(old: float, new: float) -> float:
    """app_queue's recalc_holdtime: (3*old + new) / 4."""
    return (3.0 * old + new) / 4.0


def ewma_wait(holdtime: float, waited: float) -> float:
    """app_queue's estimate: holdtime minus the time already waited, never negative."""
    return max(0.0, holdtime - waited)


def erlang_c_pwait(agents: int, traffic: float) -> float:
    """Erlang C probability that an arrival waits, for N agents and A erlangs (1.0 when A >= N)."""
    if agents <= 0 or traffic >= agents:
        return 1.0
    if traffic <= 0:
        return 0.0
    # Erlang B by the stable recursion B(k) = A*B(k-1) / (k + A*B(k-1)), then C = N*B / (N - A*(1 - B)).
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return agents * b / (agents - traffic * (1.0 - b))


def erlang_c_wait(position: int, agents: int, aht: float, arrival_rate: float | None) -> float:
    """Expected wait of the caller at `position` under Erlang C (see the module docstring)."""
    if agents <= 0 or position <= 0:
        return 0.0
    pwait = 1.0 if arrival_rate is None else erlang_c_pwait(agents, arrival_rate * aht)
    return pwait * position * aht / agents
