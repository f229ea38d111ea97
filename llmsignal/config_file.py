"""``llmsignal run --config run.yaml``: every flag of ``run`` in a file, checked before any work.

    methods: [full, lora, adapter]        # a list, or "all"
    param: {lora.r: 4, adapter.reduction_factor: 8}
    strategy: [ThresholdStrategy]
    cost: {spread_pips: 1.2}
    steps: 200

A key is a flag's name without the dashes (``walk-forward`` or ``walk_forward``). Flags given on the
command line override the file; the repeatable ones (``--param``, ``--strategy``, ``--strategy-param``,
``--cost``) add to its lists. ``examples/run.yaml`` is the default run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(ValueError):
    """A run config that cannot be read, or a key or value no flag of ``run`` takes."""


def defaults_from_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``parser`` defaults from the YAML or JSON file ``path``, converted and checked as the flags would be."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigFileError(f"{path}: cannot read ({err.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(f"{path}: expected a mapping of flag names to values")
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    defaults = {}
    for key, value in raw.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            raise ConfigFileError(f"{path}: unknown key {key!r}; run takes: {', '.join(sorted(actions))}")
        defaults[dest] = _converted(path, key, value, actions[dest])
    return defaults


def _converted(path: Path, key: str, value: Any, action: argparse.Action) -> Any:
    where = f"{path}: {key}"
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: must be true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):  # a list of NAME=VALUE or specs, or a mapping of them
        if isinstance(value, dict):
            return [f"{k}={v}" for k, v in value.items()]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float) for v in items):
            raise ConfigFileError(f"{where}: must be a list or a mapping, got {value!r}")
        return [str(v) for v in items]
    if value is None:
        return None
    if isinstance(value, list):  # methods: [full, lora] is --methods full,lora
        value = ",".join(str(v) for v in value)
    if isinstance(value, dict | list):
        raise ConfigFileError(f"{where}: must be a single value, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if action.type else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        raise ConfigFileError(f"{where}: {err}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigFileError(f"{where}: {converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted
