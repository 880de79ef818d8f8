"""fast_init keeps a frozen dataclass's behaviour: signature, defaults, equality, immutability."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from coordinator.queue import decisions, events
from coordinator.queue.fastinit import fast_init


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    name: str
    count: int = 3
    tags: tuple[str, ...] = ()


def test_same_values_defaults_equality_and_still_frozen() -> None:
    a = Sample("x")
    assert (a.name, a.count, a.tags) == ("x", 3, ())
    assert a == Sample(name="x", count=3) and a != Sample("x", 4) and hash(a) == hash(Sample("x"))
    assert Sample("y", tags=("t",)).tags == ("t",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.count = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample("x", bogus=1)  # type: ignore[call-arg]
    assert list(inspect.signature(Sample).parameters) == ["name", "count", "tags"]


def test_refuses_what_it_does_not_handle() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    for cls in (Mutable, Factory):
        with pytest.raises(TypeError):
            fast_init(cls)


@pytest.mark.parametrize("module", [events, decisions])
def test_every_event_and_decision_builds_like_a_dataclass(module: object) -> None:
    for name in vars(module)["__all__"]:
        cls = getattr(module, name)
        if not dataclasses.is_dataclass(cls):
            continue
        fields = dataclasses.fields(cls)
        # Rebuilding from its own fields gives an equal instance: same order, names and defaults.
        required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        values = {f.name: f"v-{f.name}" for f in required}
        obj = cls(**values)
        assert cls(*[getattr(obj, f.name) for f in fields]) == obj
        assert dataclasses.asdict(obj) == {**{f.name: f.default for f in fields if f not in required}, **values}
