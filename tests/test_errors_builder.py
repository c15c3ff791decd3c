"""The shared state-dict checks, the one fingerprint and the one dict -> dataclass builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch

from openclap.builder import build, check_literals
from openclap.errors import CheckpointError, ConfigError, check_state_dict, state_dict_fingerprint


def test_fingerprint_sees_sign_flips_and_swapped_rows() -> None:
    g = torch.Generator().manual_seed(0)
    sd = {"a.weight": torch.randn(4, 3, generator=g), "b.bias": torch.randn(3, generator=g)}
    base = state_dict_fingerprint(sd)
    assert state_dict_fingerprint({k: v.clone() for k, v in sd.items()}) == base
    flipped = dict(sd, **{"b.bias": -sd["b.bias"]})  # same absolute sums
    swapped = dict(sd, **{"a.weight": sd["a.weight"][[1, 0, 2, 3]]})  # same sums and absolute sums
    renamed = {"a.weight2": sd["a.weight"], "b.bias": sd["b.bias"]}
    halves = dict(sd, **{"b.bias": sd["b.bias"].half()})
    prints = {state_dict_fingerprint(x) for x in (flipped, swapped, renamed, halves)}
    assert len(prints) == 4 and base not in prints
    assert state_dict_fingerprint(sd, extra={"name": "x"}) != base
    # prefixes keep only the named part: a change elsewhere does not count
    assert state_dict_fingerprint(flipped, prefixes=("a.",)) == state_dict_fingerprint(sd, prefixes=("a.",))


def test_check_state_dict_names_every_problem() -> None:
    own = {"x": torch.zeros(2, 3), "y": torch.zeros(1), "z": torch.zeros(4)}
    check_state_dict(own, dict(own), "ok", "never raised")
    given = {"x": torch.zeros(3, 2), "y": torch.zeros(1), "w": torch.zeros(1)}
    with pytest.raises(
        CheckpointError, match=r"x: checkpoint \(3, 2\) vs model \(2, 3\).*missing.*'z'.*unexpected.*'w'.*Fix"
    ):
        check_state_dict(own, given, "demo", "Fix it.")


@dataclass
class _Inner:
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    rate: float = 1.0
    name: str | None = None
    kind: Literal["x", "y"] | None = None

    def __post_init__(self) -> None:
        check_literals(self)


def test_builder_honours_literal_types_and_keys() -> None:
    out = build(_Outer, {"inner": {"mode": "b", "sizes": [3, 4, 5]}, "rate": 2, "kind": "y"})
    assert out == _Outer(_Inner("b", (3, 4, 5)), 2.0, None, "y") and isinstance(out.rate, float)
    with pytest.raises(ConfigError, match=r"_Outer.inner.mode must be one of \['a', 'b'\], got 'c'"):
        build(_Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['rat'\]"):
        build(_Outer, {"rat": 1.0})
    with pytest.raises(ConfigError, match="must be an integer"):
        build(_Outer, {"inner": {"sizes": [1, "2"]}})
    with pytest.raises(ConfigError, match=r"kind must be one of \['x', 'y'\]"):
        _Outer(kind="z")  # hand-made configs are checked too (check_literals in __post_init__)


@dataclass
class _Task:
    inner: _Inner = field(default_factory=lambda: _Inner(mode="b", sizes=(7,)))


def test_partial_nested_mapping_keeps_the_fields_own_defaults() -> None:
    # a task's optimiser defaults survive `optim: {lr: ...}`: only the given keys change
    assert build(_Task, {"inner": {"sizes": [1]}}) == _Task(_Inner("b", (1,)))
    assert build(_Task, {}) == _Task(_Inner("b", (7,)))
