"""`fast_init`: a cheaper `__init__` for the frozen, slotted dataclasses on the leader's hot path.

A frozen dataclass's generated `__init__` assigns each field with `object.__setattr__(self, name,
value)` (a name lookup per field), which makes an 11-field CallerJoined cost about 4x a mutable one.
The replacement writes each slot through its member descriptor, the same store without the name
lookup: about 2x faster, and the instance stays exactly as frozen (`__setattr__` still raises). One
event and one or two decisions are built per node event, so this is about 1 us per event.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen slots dataclass an `__init__` with the same signature that fills the slots directly.

    Only for plain dataclasses: every field in `__init__`, positional-or-keyword, no default_factory and
    no `__post_init__` (anything else raises TypeError at import time, not a silent difference).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen, slotted dataclasses")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported")
    namespace: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields are supported")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot's member descriptor
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # the way dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
