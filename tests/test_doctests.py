"""The usage examples in docstrings run, so they cannot drift from the code."""

import doctest
import importlib
import pkgutil

import pytest

import llmsignal

PACKAGES = ["llmsignal", "llmsignal.finetune", "llmsignal.models", "llmsignal.strategies", "llmsignal.backtests"]
MODULES = sorted({package for package in PACKAGES} | {
    f"{package}.{info.name}" for package in PACKAGES
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__) if info.name != "__main__"})


def test_every_stage_is_a_subpackage_of_llmsignal():
    assert {"llmsignal.finetune.codec", "llmsignal.models.registry", "llmsignal.strategies.threshold",
            "llmsignal.backtests.engine", "llmsignal.cli"} <= set(MODULES)
    assert llmsignal.ThresholdStrategy.__module__ == "llmsignal.strategies.threshold"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see the output above)"
