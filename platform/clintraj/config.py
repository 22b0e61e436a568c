"""Typed configuration loaded from YAML.

Every setting has its default in its stage's dataclass (the paper's values). `load(ConfigClass,
path)` reads a YAML file over those defaults and fails on a key the class does not have, or a value
of the wrong type, naming the key and the file. A config may name a shipped recipe instead of a
path (`demo`, `cluster`: `clintraj/configs/<name>.yaml`), and a YAML file may start from another
with `base: <name or path>`, changing only the keys it names.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a mistyped value."""


def _check_type(value: Any, annotation: Any, where: str, default: Any = None) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: None is not allowed")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item_type = args[0] if args else Any
        items = [_check_type(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_type, value_type = args if args else (Any, Any)
        return {
            _check_type(k, key_type, f"{where} key"): _check_type(v, value_type, _key(where, str(k)))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return _build(annotation, value, where, default if isinstance(default, annotation) else None)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Path and isinstance(value, str):
        return Path(value)
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got a boolean {value!r}")
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type[T], values: dict, where: str, base: T | None = None) -> T:
    """`values` over `base` (default: `cls()`), section by section: a nested section in the YAML
    changes only the keys it names, and keeps the rest of the parent's default for that section
    (e.g. the demo's own pretraining settings), not the section class's bare defaults.
    `where` is "<file>: key 'a.b'" for a nested section, or "<file>" at the top."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{_key(where, unknown[0])}: unknown key (known keys: {', '.join(sorted(fields))})")
    base = cls() if base is None else base
    checked = {k: _check_type(v, hints[k], _key(where, k), getattr(base, k)) for k, v in values.items()}
    try:
        return dataclasses.replace(base, **checked)
    except ValueError as error:  # a value the class's own check (__post_init__) refuses
        raise ConfigError(f"{where}: {error}") from error


def _key(where: str, key: str) -> str:
    if where.endswith("'"):
        return f"{where[:-1]}.{key}'"
    return f"{where}: key '{key}'"


def from_dict(cls: type[T], values: dict, source: str = "<dict>") -> T:
    """Build `cls` from a mapping over its defaults; `source` names the origin in errors."""
    return _build(cls, values or {}, source)


RECIPES = ("demo", "cluster", "smollm2")  # clintraj/configs/<name>.yaml


def recipe(name_or_path: str | Path) -> Path:
    """A config file: a path, or the name of a recipe shipped with the package."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parent / "configs" / f"{name_or_path}.yaml"
    if str(name_or_path) in RECIPES and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name_or_path} (nor a shipped recipe: {', '.join(RECIPES)})")


def load(cls: type[T], path: str | Path | None) -> T:
    """Load `cls` from a YAML file or a recipe's name (None gives the defaults); a `base` key
    names the config it starts from."""
    if path is None:
        return cls()
    path = recipe(path)
    with open(path) as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(values).__name__}")
    base = values.pop("base", None) if "base" not in {f.name for f in dataclasses.fields(cls)} else None
    return _build(cls, values, str(path), load(cls, _base_of(path, str(base))) if base else None)


def _base_of(path: Path, base: str) -> Path:
    """A `base` entry: a path relative to the file that names it, or a recipe's name."""
    relative = path.parent / base
    return relative if relative.is_file() else recipe(base)


def to_dict(config: Any) -> dict:
    """Plain, YAML-safe dict of a config (paths as strings), for logging as run params."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, the shape MLflow params take."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def fingerprint(values: Any) -> str:
    """A short, stable hash of a config (a dataclass or plain values): a folder name that changes
    when any setting does."""
    import hashlib
    import json

    plain = to_dict(values) if dataclasses.is_dataclass(values) else values
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]
