"""Frozen dataclass configs, named presets and ``key=value`` overrides.

Every component of musicrl has one config dataclass and three named presets:

* ``tiny``  — for tests: builds/trains in seconds, results are meaningless;
* ``small`` — the default bundle: trains end to end on a 2-core CPU in hours;
* ``base``  — GPU-sized, MusicLM-like proportions (not trained here).

Fields declare their constraints in ``metadata`` (see :func:`opt`), so that one
validator can refuse an unknown key, a value of the wrong type or an impossible
value with a message that names the key and says what is allowed::

    cfg = resolve(DataConfig, "small", ["seed=3", "drum_fraction=0.4"])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from musicrl.errors import MusicrlError

__all__ = [
    "ConfigError",
    "opt",
    "register_presets",
    "presets_of",
    "resolve",
    "apply_overrides",
    "validate",
    "describe",
    "to_dict",
    "from_dict",
]

C = TypeVar("C")


class ConfigError(MusicrlError, ValueError):
    """A configuration value was refused. The message names the key and the fix."""


def opt(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declares a config field with its documentation and constraints.

    Args:
      default: the default value (immutable: use tuples, not lists).
      help: one line shown by ``musicrl <cmd> --help``.
      choices: the allowed values, if the field is an enumeration.
      min, max: inclusive bounds for numbers (for tuples: for every element).
      check: an extra validator returning an error message, or None if fine.
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None,
            "min": min, "max": max, "check": check}
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------

_PRESETS: dict[type, dict[str, Any]] = {}


def register_presets(cls: type[C], presets: Mapping[str, C]) -> None:
    """Registers the named presets of a config class (each is validated)."""
    for name, cfg in presets.items():
        validate(cfg, where=f"preset {name!r} of {cls.__name__}")
    _PRESETS[cls] = dict(presets)


def presets_of(cls: type) -> dict[str, Any]:
    return dict(_PRESETS.get(cls, {}))


def resolve(cls: type[C], preset: str, overrides: Iterable[str] = ()) -> C:
    """Returns the preset ``preset`` of ``cls`` with ``key=value`` overrides applied."""
    presets = _PRESETS.get(cls)
    if not presets:
        raise ConfigError(f"{cls.__name__} has no registered presets")
    if preset not in presets:
        raise ConfigError(
            f"unknown preset {preset!r} for {cls.__name__}; choose one of {sorted(presets)}")
    return apply_overrides(presets[preset], overrides)


# ----------------------------------------------------------------------------
# Overrides
# ----------------------------------------------------------------------------

def _field_map(cfg_or_cls: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg_or_cls)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(key: str, fields: Iterable[str], prefix: str) -> ConfigError:
    names = sorted(fields)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown config key '{prefix}{key}'.{hint} Known keys: {', '.join(prefix + n for n in names)}")


def _parse_scalar(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for a in args:
            try:
                return _parse_scalar(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        for a in allowed:
            if str(a) == text:
                return a
        raise ConfigError(f"{key}={text!r} is not allowed; choose one of {list(allowed)}")
    if origin is tuple:
        args = typing.get_args(tp)
        elem = args[0] if args else str
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse_scalar(p, elem, key) for p in parts)
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a number") from None
    if tp is str:
        return text
    raise ConfigError(f"{key}: cannot set a field of type {tp} from the command line")


def _check_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_check_type(v, args[0]) for v in value)
        return len(args) == len(value) and all(_check_type(v, a) for v, a in zip(value, args, strict=True))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return isinstance(value, tp)


def apply_overrides(cfg: C, overrides: Iterable[str]) -> C:
    """Applies ``key=value`` strings (dotted keys reach nested configs)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        cfg = _set(cfg, key.strip().split("."), text.strip(), prefix="")
    validate(cfg)
    return cfg


def _set(cfg: Any, path: list[str], text: str, prefix: str) -> Any:
    fields = _field_map(cfg)
    name = path[0]
    if name not in fields:
        raise _unknown_key(name, fields, prefix)
    tp = _hints(type(cfg))[name]
    current = getattr(cfg, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{prefix}{name} is not a nested config; use {prefix}{name}=VALUE")
        value = _set(current, path[1:], text, prefix=f"{prefix}{name}.")
    else:
        if dataclasses.is_dataclass(current):
            raise ConfigError(
                f"{prefix}{name} is a nested config; set its fields, e.g. {prefix}{name}.KEY=VALUE")
        value = _parse_scalar(text, tp, prefix + name)
    return dataclasses.replace(cfg, **{name: value})


# ----------------------------------------------------------------------------
# Validation and description
# ----------------------------------------------------------------------------

def validate(cfg: Any, where: str = "", prefix: str = "") -> None:
    """Checks every field of ``cfg`` against its type and declared constraints."""
    hints = _hints(type(cfg))
    loc = f" ({where})" if where else ""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(value):
            validate(value, where, prefix=f"{prefix}{f.name}.")
            continue
        key = prefix + f.name
        if not _check_type(value, tp):
            raise ConfigError(f"{key}={value!r}{loc}: expected type {_type_name(tp)}")
        meta = f.metadata
        choices = meta.get("choices")
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if choices and v not in choices:
                raise ConfigError(f"{key}={v!r}{loc} is not allowed; choose one of {list(choices)}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                lo, hi = meta.get("min"), meta.get("max")
                if lo is not None and v < lo or hi is not None and v > hi:
                    rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                    raise ConfigError(f"{key}={v!r}{loc} is out of range; allowed {rng}")
        check = meta.get("check")
        if check is not None:
            msg = check(value)
            if msg:
                raise ConfigError(f"{key}={value!r}{loc}: {msg}")
    post = getattr(cfg, "check", None)
    if callable(post):
        msg = post()
        if msg:
            name = prefix.rstrip(".") or type(cfg).__name__
            raise ConfigError(f"{name}{loc}: {msg}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows (key, type, default of the small preset or the class, help) for --help."""
    presets = _PRESETS.get(cls, {})
    ref = presets.get("small") or (cls() if not presets else next(iter(presets.values())))
    rows = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(ref, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), prefix=f"{prefix}{f.name}."))
            continue
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ += f" (one of {', '.join(map(str, f.metadata['choices']))})"
        rows.append((prefix + f.name, _type_name(hints[f.name]), repr(value), help_))
    return rows


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuilds a config from :func:`to_dict` output (e.g. from a checkpoint), validated."""
    fields = _field_map(cls)
    hints = _hints(cls)
    kwargs = {}
    for k, v in data.items():
        if k not in fields:
            raise _unknown_key(k, fields, prefix="")
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            v = from_dict(tp, v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[k] = v
    cfg = cls(**kwargs)
    validate(cfg)
    return cfg
