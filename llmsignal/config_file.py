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
import codecs
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20  # a config is a few lines; examples/sweep.yaml is under 2 KB
MAX_CONFIG_VALUES = 10_000  # YAML nodes once every alias is expanded: 9 levels of 9 aliases would be 387 million
# the byte-order marks an editor writes, longest first (UTF-32 LE starts with UTF-16 LE's mark)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class ConfigFileError(ValueError):
    """A run config that cannot be read, or a key or value no flag of ``run`` takes."""


def read_config_text(path: Path, error: type[Exception] = ConfigFileError, what: str = "") -> str:
    """The text of a config file of at most ``MAX_CONFIG_BYTES``: UTF-8, or any UTF its byte-order mark names.

    ``error`` (one line naming the file) for a file that cannot be read, is too big or is not text.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise error(f"{path}: cannot read{what} ({err.strerror or type(err).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise error(f"{path}: over {MAX_CONFIG_BYTES:,} bytes; a config is a few lines of YAML or JSON")
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\0" in data:
        raise error(f"{path}: holds NUL bytes, so it is not UTF-8 text (UTF-16 without a byte-order mark?); "
                    "save it as UTF-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise error(f"{path}: not {encoding.removesuffix('-sig').upper()} text (byte 0x{data[err.start]:02x} at "
                    f"offset {err.start}); save it as UTF-8") from None


class _ExpansionError(yaml.YAMLError):
    pass


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document of more than ``MAX_CONFIG_VALUES`` values once its aliases are
    expanded (an alias bomb: a few lines that expand to billions), counted on the composed nodes before any
    Python object is built, so a bomb is refused in milliseconds."""

    def construct_document(self, node: yaml.Node) -> Any:
        _count(node, {})
        return super().construct_document(node)


def _count(node: yaml.Node, seen: dict[int, int | None]) -> int:
    """Values under ``node`` with aliases expanded; each distinct node is visited once."""
    key = id(node)
    if key in seen:
        if seen[key] is None:
            raise _ExpansionError("an alias refers to the value that contains it")
        return seen[key]
    seen[key] = None
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_count(child, seen) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_count(k, seen) + _count(v, seen) for k, v in node.value)
    else:
        total = 1
    if total > MAX_CONFIG_VALUES:
        raise _ExpansionError(f"its aliases expand to over {MAX_CONFIG_VALUES:,} values (an alias bomb?)")
    seen[key] = total
    return total


def parse_yaml(text: str, path: Path, error: type[Exception] = ConfigFileError) -> Any:
    """The YAML document in ``text`` (read from ``path``), bounded; ``error`` naming the file if it is not one."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader
    except _ExpansionError as err:
        raise error(f"{path}: refused: {err}") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an integer of more than 4,300 digits
        raise error(f"{path}: not valid YAML ({' '.join(str(err).split())[:300]})") from None
    except RecursionError:
        raise error(f"{path}: not valid YAML (nested too deeply)") from None


def defaults_from_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``parser`` defaults from the YAML or JSON file ``path``, converted and checked as the flags would be."""
    raw = parse_yaml(read_config_text(path), path)
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
    convert = getattr(action, "convert", None) or action.type  # cli_args.Checked flags convert in their action
    try:
        converted = convert(text) if convert else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        raise ConfigFileError(f"{where}: {err}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigFileError(f"{where}: {converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted
