"""llmsignal: fine-tune GPT-2 on price series, forecast, and trade the forecasts in backtrader.

    >>> from llmsignal import RunConfig, run
    >>> table = run(RunConfig(methods=["lora", "adapter"], quick=True))   # doctest: +SKIP

    >>> from llmsignal import ThresholdStrategy, Signal
    >>> ThresholdStrategy.params.threshold_bps
    0.5

The stages live in subpackages, in the order data flows through them:
``llmsignal.finetune`` (bars, codec, base, methods, training), ``llmsignal.models``
(registry, entries, baselines, predictor, server), ``llmsignal.strategies`` and
``llmsignal.backtests`` (engine, costs, metrics, statistics, reports). Names below
are imported on first use, so ``import llmsignal`` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Defaults for every entry point (CLI, Ray workers, scripts): nothing is fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # a bar per weight load; our own bars show progress

__version__ = "0.2.0"

_EXPORTS = {
    "load_bars": "llmsignal.data",
    "DataError": "llmsignal.finetune.bars",
    "Split": "llmsignal.finetune.bars",
    "split_bars": "llmsignal.finetune.bars",
    "PriceCodec": "llmsignal.finetune.codec",
    "load_base": "llmsignal.finetune.base",
    "Method": "llmsignal.finetune.methods",
    "make_method": "llmsignal.finetune.methods",
    "get_model": "llmsignal.finetune.methods",
    "TrainConfig": "llmsignal.finetune.train",
    "Registry": "llmsignal.models.registry",
    "Entry": "llmsignal.models.registry",
    "train_entry": "llmsignal.models.entries",
    "Predictor": "llmsignal.models.predictor",
    "LLMSignalStrategy": "llmsignal.strategies",
    "Signal": "llmsignal.strategies",
    "SignalFeed": "llmsignal.strategies",
    "ThresholdStrategy": "llmsignal.strategies",
    "ProbabilityStrategy": "llmsignal.strategies",
    "SideStrategy": "llmsignal.strategies",
    "EnsembleStrategy": "llmsignal.strategies",
    "VolatilityTargetStrategy": "llmsignal.strategies",
    "Costs": "llmsignal.backtests.costs",
    "run_backtest": "llmsignal.backtests.engine",
    "RunConfig": "llmsignal.run",
    "run": "llmsignal.run",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llmsignal' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
