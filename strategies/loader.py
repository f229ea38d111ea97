"""Find a strategy class from a command-line spec and type its ``name=value`` parameters.

    cls = load_strategy("ThresholdStrategy")                  # a shipped strategy
    cls = load_strategy("llmsignal.strategies.probability:ProbabilityStrategy")  # package.module:Class
    cls = load_strategy("~/mine/contrarian.py:Contrarian")     # a file anywhere
    params = strategy_params(cls, parse_param_pairs(["threshold_bps=1.5"]))
    run_backtest(frame, cls, params)

Every failure is a ``llmsignal.strategies.StrategyError`` with a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import llmsignal.strategies as strategies
from llmsignal.strategies import LLMSignalStrategy, StrategyError

OLD_NAMES = ("strategies", "models", "finetune", "backtests")  # top-level import names before llmsignal 0.2
FORMS = "a shipped name, package.module:Class or path/to/file.py:Class"
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def shipped_strategies() -> dict[str, type[LLMSignalStrategy]]:
    """The strategies exported by the ``strategies`` package, by class name."""
    return {name: obj for name in strategies.__all__
            if _is_strategy(obj := getattr(strategies, name)) and obj is not LLMSignalStrategy}


def load_strategy(spec: str) -> type[LLMSignalStrategy]:
    """The ``LLMSignalStrategy`` subclass named by ``spec`` (one of three forms, see the module docstring)."""
    if ":" not in spec:
        shipped = shipped_strategies()
        if spec not in shipped:
            raise StrategyError(f"unknown strategy {spec!r}; shipped strategies: {', '.join(sorted(shipped))} "
                                f"(or give package.module:Class or path/to/file.py:Class)")
        return shipped[spec]
    where, _, name = spec.rpartition(":")  # rpartition: a Windows path has a colon of its own
    if not where or not name:
        raise StrategyError(f"strategy {spec!r} is not {FORMS}")
    module = _load_file(where) if _is_path(where) else _import_module(where)
    return _strategy_in(module, name, spec)


def parse_param_pairs(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` (repeated ``--param name=value`` flags) as ``{"a": "1", "b": "x"}``."""
    pairs = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise StrategyError(f"strategy parameter {item!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def strategy_params(cls: type[LLMSignalStrategy], pairs: Mapping[str, Any]) -> dict[str, Any]:
    """``pairs`` checked against ``cls``'s params and converted to the types of their defaults.

    Strings become bool (``true/false/1/0/yes/no/on/off``), int, float or stay
    strings, after the default; a param whose default is ``None`` keeps the
    string; values that are not strings pass as they are.

    >>> from llmsignal.strategies import ThresholdStrategy
    >>> strategy_params(ThresholdStrategy, {"threshold_bps": "1.5", "atr_period": "20"})
    {'threshold_bps': 1.5, 'atr_period': 20}
    """
    defaults = dict(zip(cls.params._getkeys(), cls.params._getdefaults(), strict=True))
    unknown = sorted(set(pairs) - set(defaults))
    if unknown:
        raise StrategyError(f"{cls.__name__} takes no parameter {', '.join(unknown)}; "
                            f"it takes: {', '.join(sorted(defaults))}")
    return {name: _convert(cls, name, value, defaults[name]) for name, value in pairs.items()}


def _convert(cls: type, name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    kind = type(default)
    if kind is bool:  # before int: bool("false") is True, and bool is an int
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise StrategyError(f"{cls.__name__} parameter {name}={value!r}: expected true/false/1/0")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise StrategyError(f"{cls.__name__} parameter {name}={value!r}: expected {kind.__name__} "
                            f"like its default {default!r}") from None


def _is_strategy(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, LLMSignalStrategy)


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as error:  # a user module can fail in any way; the CLI wants one line, not a traceback
        raise StrategyError(f"cannot import module {name!r}: {type(error).__name__}: {error}") from error


def _load_file(where: str) -> ModuleType:
    """Execute a ``.py`` file as a module of its own, registered in ``sys.modules`` under a private name."""
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise StrategyError(f"strategy file {where} does not exist")
    # A name per path: two user files both called strategy.py must not replace each other.
    name = f"_llmsignal_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StrategyError(f"strategy file {where} cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        if isinstance(error, ImportError) and (old := _old_import_name(error)):
            raise StrategyError(f"strategy file {where} imports {old!r}, which llmsignal no longer installs; "
                                f"write `from llmsignal.{old} import ...`") from error
        raise StrategyError(f"strategy file {where} failed to load: {type(error).__name__}: {error}") from error
    return module


def _old_import_name(error: ImportError) -> str | None:
    """``strategies``, ``models``, ... when the failed import is one of llmsignal's former top-level names."""
    top = (error.name or "").partition(".")[0]
    if top in OLD_NAMES:
        return top
    # `from strategies import X` against somebody else's `strategies` package: "cannot import name X from strategies"
    return next((old for old in OLD_NAMES if f"from '{old}'" in str(error) or f"from '{old}." in str(error)), None)


def _strategy_in(module: ModuleType, name: str, spec: str) -> type[LLMSignalStrategy]:
    obj = getattr(module, name, None)
    if obj is None:
        found = sorted(n for n, o in vars(module).items() if _is_strategy(o) and o is not LLMSignalStrategy)
        raise StrategyError(f"{spec}: {module.__file__ or module.__name__} defines no {name}; "
                            f"strategies there: {', '.join(found) or 'none'}")
    if obj is LLMSignalStrategy:
        raise StrategyError(f"{spec}: LLMSignalStrategy is the base class; name a subclass that implements decide")
    if not _is_strategy(obj):
        raise StrategyError(f"{spec}: {name} is not a subclass of llmsignal.strategies.LLMSignalStrategy")
    return obj
