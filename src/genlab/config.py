"""Dataclass configs: JSON/YAML I/O and dotted overrides (`--set model.base_channels=64`)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import GenlabError


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise GenlabError(f"{where}: '{value}' is not one of {list(typing.get_args(hint))}")
        return value
    if origin in (tuple, list):
        (inner, *_rest) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        return (tuple if origin is tuple else list)(_coerce(v, inner, where) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (GenlabError, ValueError, TypeError):
                continue
        raise GenlabError(f"{where}: cannot read '{value}' as {hint}")
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise GenlabError(f"{where}: '{value}' is not a boolean (use true/false)")
        return bool(value)
    if hint in (int, float, str):
        try:
            return hint(value)
        except ValueError:
            raise GenlabError(f"{where}: '{value}' is not a valid {hint.__name__}") from None
    return value


def from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build dataclass `cls` from a plain dict, checking names and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise GenlabError(f"{where}: unknown field(s) {sorted(unknown)}; valid fields: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[key] = from_dict(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings to a nested dict (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise GenlabError(f"override '{item}' must look like key=value, e.g. model.base_channels=64")
        key, raw = item.split("=", 1)
        target = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            if not isinstance(target.get(p), dict):
                raise GenlabError(f"override '{item}': '{p}' is not a config section")
            target = target[p]
        target[leaf] = yaml.safe_load(raw)
    return data


def save_yaml(data: dict, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False))


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}
