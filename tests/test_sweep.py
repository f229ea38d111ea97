"""Sweeps: the grid and the summary as pure functions, failed trials, the sequential fallback, and Ray."""

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsignal import sweep
from llmsignal.backtests.metrics import FX
from llmsignal.backtests.significance import deflated_sharpe_ratio
from llmsignal.cli import main
from llmsignal.finetune.bars import DataError
from llmsignal.finetune.methods import MethodError
from llmsignal.models.registry import Registry
from llmsignal.strategies import StrategyError
from tests.conftest import synthetic_bars

GRID = """
methods: [lora, adapter]
seeds: [0, 1]
params:
  lora: {r: [4, 8], alpha: 16}
data: [EURUSD, d/bars.csv]
strategies: [ThresholdStrategy, {spec: ThresholdStrategy, params: {threshold_bps: "2"}, name: wide}]
budget: {steps: 3, quick: true}
"""


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep-data") / "bars.csv"
    synthetic_bars(500).to_csv(path)
    return path


def _versions(registry):
    registry = Registry(registry)
    return {name: registry.versions(name) for name in registry.names()}


# --- (a) pure functions -------------------------------------------------------------------------------------------

def test_settings_are_the_product_of_the_value_lists():
    assert sweep.settings({}) == [{}]
    assert sweep.settings({"r": [4, 8], "alpha": [16]}) == [{"r": 4, "alpha": 16}, {"r": 8, "alpha": 16}]


def test_a_yaml_grid_expands_to_every_trial(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bars.csv").write_text("only its existence is checked")
    (tmp_path / "grid.yaml").write_text(GRID)
    grid = sweep.load_grid(tmp_path / "grid.yaml")
    trials = sweep.expand(grid)
    # data (2) x [lora (2 settings) + adapter (defaults)] x seeds (2)
    assert len(trials) == 2 * 3 * 2 and len({t.id for t in trials}) == 12
    assert [t.id for t in sweep.expand(sweep.load_grid(tmp_path / "grid.yaml"))] == [t.id for t in trials]
    assert {json.dumps(t.params) for t in trials if t.method == "lora"} == {'{"r": 4, "alpha": 16}',
                                                                            '{"r": 8, "alpha": 16}'}
    assert {t.data for t in trials} == {"EURUSD", str((tmp_path / "d" / "bars.csv").resolve())}
    assert trials[0].budget == {"steps": 3, "quick": True}
    assert [(s["label"], s["params"]) for s in trials[0].strategies] == [("ThresholdStrategy", {}),
                                                                        ("wide", {"threshold_bps": 2.0})]
    assert trials[0].id.startswith("lora-eurusd-seed0-")
    changed = sweep.Trial(**{**vars(trials[0]), "budget": {"steps": 4, "quick": True}})
    assert changed.id != trials[0].id  # a new budget is a new trial, not a stale result to skip
    config = trials[0].run_config(tmp_path / "o", tmp_path / "r")
    assert (config.methods, config.method_params, config.data, config.steps) == (["lora"], {"lora": trials[0].params},
                                                                                 None, 3)


def test_inputs_in_a_grid_make_trials_of_each_kind_and_keep_close_trials_where_they_were():
    close = sweep.expand(sweep.grid_from_dict({"methods": ["lora"]}))
    both = sweep.expand(sweep.grid_from_dict({"methods": ["lora"], "inputs": ["close", "ohlc"]}))
    assert [(t.method, t.inputs) for t in both] == [("lora", "close"), ("lora", "ohlc")]
    assert both[0].id == close[0].id  # a sweep started before inputs existed finds its finished trials
    assert both[1].id.startswith("lora-ohlc-eurusd-seed0-")
    assert both[1].run_config(Path("o"), Path("r")).inputs == ["ohlc"]
    rows = sweep.results_table([sweep.make_result(t, "ok", "", [_metrics(1.0, 0.1, 0.01)], 1.0) for t in both])
    assert list(zip(rows["method"], rows["inputs"], strict=True)) == [("lora", "close"), ("lora-ohlc", "ohlc")]


@pytest.mark.parametrize("raw, error, message", [
    ({"methods": ["lora"], "inputs": ["hlc"]}, sweep.SweepError, "inputs: hlc is not one of close, ohlc"),
    ({"seeds": [0]}, sweep.SweepError, "lists no methods"),
    ({"methods": ["lora"], "epochs": 3}, sweep.SweepError, "unknown key(s) epochs"),
    ({"methods": ["dora"]}, MethodError, "unknown method 'dora'"),
    ({"methods": ["lora"], "params": {"adapter": {"reduction_factor": [8]}}}, sweep.SweepError, "not in methods"),
    ({"methods": ["lora"], "seeds": ["one"]}, sweep.SweepError, "expected an integer"),
    ({"methods": ["lora"], "data": ["missing.csv"]}, DataError, "no such file"),
    ({"methods": ["lora"], "strategies": ["Nope"]}, StrategyError, "unknown strategy 'Nope'"),
    ({"methods": ["lora"], "budget": {"epochs": 1}}, sweep.SweepError, "budget: unknown key(s) epochs"),
    ({"methods": ["lora"], "strategies": ["ThresholdStrategy", "ThresholdStrategy"]}, sweep.SweepError, "repeat"),
])
def test_a_bad_grid_is_refused_before_any_training(tmp_path, raw, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        sweep.grid_from_dict(raw, tmp_path)


def _result(method, seed, params, rows, status="ok", error=""):
    trial = sweep.Trial(method, seed, params, "EURUSD", [{"label": "T", "spec": "ThresholdStrategy", "params": {}}])
    return sweep.make_result(trial, status, error, rows, 1.0)


def _metrics(mase, sharpe, daily_sharpe, mse=1e-6):
    return {"strategy": "T", "mse": mse, "mase": mase, "sharpe": sharpe, "daily_sharpe": daily_sharpe,
            "daily_obs": 60.0, "daily_skew": -0.1, "daily_kurtosis": 3.5, "entry": "x@1"}


@pytest.fixture()
def known_results():
    return [
        _result("lora", 0, {"r": 4}, [_metrics(0.9, 1.0, 0.06)]),
        _result("lora", 1, {"r": 4}, [_metrics(1.1, 0.5, 0.03)]),
        _result("lora", 0, {"r": 8}, [_metrics(0.8, 2.0, 0.12, mse=2e-6)]),
        _result("lora", 1, {"r": 8}, [_metrics(0.9, -1.0, -0.06, mse=4e-6)]),
        _result("adapter", 0, {}, [_metrics(1.2, 0.2, 0.01)]),
        _result("adapter", 1, {"nope": 1}, [], "failed", "MethodError: method 'adapter' takes no parameter 'nope'"),
    ]


def test_results_table_has_a_row_per_trial_and_strategy(known_results):
    table = sweep.results_table(known_results)
    assert list(table.columns) == sweep.columns()
    assert len(table) == 6 and table["trial"].is_unique
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["strategy"] == "T" and "nope" in failed["error"] and math.isnan(failed["mase"])
    assert json.loads(table[table["method"] == "adapter"]["params"].iloc[0]) in ({}, {"nope": 1})


def test_summary_of_known_results(known_results):
    table = sweep.results_table(known_results)
    summary = sweep.summarise(table)
    assert (summary["trials"], summary["ok"], summary["failed"], summary["backtests"]) == (6, 5, 1, 5)
    seeds = summary["seeds"].set_index(["method", "params"])
    r4, r8 = seeds.loc[("lora", '{"r": 4}')], seeds.loc[("lora", '{"r": 8}')]
    assert (r4["seeds"], r4["mase_mean"], r4["sharpe_mean"]) == (2, pytest.approx(1.0), pytest.approx(0.75))
    assert r4["mase_std"] == pytest.approx(np.std([0.9, 1.1], ddof=1))
    assert r8["mse_mean"] == pytest.approx(3e-6) and r8["mse_std"] == pytest.approx(np.std([2e-6, 4e-6], ddof=1))
    assert math.isnan(seeds.loc[("adapter", "{}"), "mase_std"])  # one seed: no spread
    best = summary["best"].set_index("method")
    assert best.loc["lora", "params"] == '{"r": 8}'  # mean MASE 0.85 beats 1.0
    assert best.loc["lora", "mase_mean"] == pytest.approx(0.85)
    assert best.loc["adapter", "params"] == "{}"  # the failed setting is not a candidate
    assert best.loc["lora", "best_sharpe"] == 2.0 and best.loc["lora", "best_trial"].startswith("lora-eurusd-seed0")
    variance = np.var([0.06, 0.03, 0.12, -0.06, 0.01], ddof=1)
    assert best.loc["lora", "deflated_sharpe"] == pytest.approx(deflated_sharpe_ratio(0.12, 5, 60, -0.1, 3.5,
                                                                                      sharpe_variance=variance))
    assert best.loc["lora", "deflated_sharpe"] > best.loc["adapter", "deflated_sharpe"]
    assert list(summary["failures"]["trial"]) == [table.loc[table["status"] == "failed", "trial"].iloc[0]]
    page = sweep.sweep_html(table, summary)
    assert "Failed trials" in page and "takes no parameter" in page and "<script" not in page
    assert "Best per method" in page and "deflated_sharpe" in page


def test_deflated_sharpe_needs_return_moments():
    row = {"daily_sharpe": float("nan"), "daily_obs": 60.0, "daily_skew": 0.0, "daily_kurtosis": 3.0}
    assert math.isnan(sweep.deflated_sharpe(row, 4))
    one = {**row, "daily_sharpe": 0.1}
    assert sweep.deflated_sharpe(one, 1) == pytest.approx(deflated_sharpe_ratio(0.1, 1, 60, 0.0, 3.0))
    assert sweep.deflated_sharpe(one, 10) < sweep.deflated_sharpe(one, 1)  # more trials, a higher bar


def test_return_moments():
    assert math.isnan(sweep.return_moments([0.0, 0.0, 0.0, 0.0])["daily_sharpe"])  # never traded
    moments = sweep.return_moments([0.01, -0.02, 0.03, 0.0, 0.01])
    values = np.array([0.01, -0.02, 0.03, 0.0, 0.01])
    assert moments["daily_sharpe"] == pytest.approx(values.mean() / values.std(ddof=1))
    assert moments["daily_obs"] == 5 and moments["daily_kurtosis"] > 1


# --- (b) failed trials and the sequential fallback -----------------------------------------------------------------

def _write_config(folder, tiny_base, data, params):
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({"methods": ["lora", "adapter"], "seeds": [0], "params": params,
                                    "data": [str(data)], "base": tiny_base, "budget": {"quick": True}}))
    return path


def test_without_ray_trials_run_one_after_another_and_a_failure_is_recorded(tiny_base, data_csv, tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.setattr(sweep, "import_ray", lambda: None)
    config = _write_config(tmp_path, tiny_base, data_csv, {"adapter": {"nope": [1]}})
    out, registry = tmp_path / "out", tmp_path / "reg"
    code = main(["sweep", str(config), "--out", str(out), "--registry", str(registry)])
    captured = capsys.readouterr()
    assert code == 1  # some trial failed; the tables are written all the same
    assert ("ray is not installed; running 2 trials one after another (pip install '.[distributed]' for parallel "
            "trials)") in captured.err.splitlines()
    table = pd.read_csv(out / "sweep.csv").set_index("method")
    assert table.loc["adapter", "status"] == "failed"
    assert "MethodError: method 'adapter' takes no parameter 'nope'" in table.loc["adapter", "error"]
    lora = table.loc["lora"]
    assert lora["status"] == "ok" and pd.isna(lora["error"]) and lora["trainable_params"] > 0
    assert lora["mase"] > 0 and lora["entry"] == "bars-lora@1" and lora["strategy"] == "ThresholdStrategy"
    # the return moments come from the run's saved equity curve: the same Sharpe
    if lora["trades"] > 0:
        assert lora["daily_sharpe"] * np.sqrt(FX.periods_per_year) == pytest.approx(lora["sharpe"])
    else:
        assert lora["sharpe"] == 0 and math.isnan(lora["daily_sharpe"])
    page = (out / "sweep.html").read_text()
    assert "Failed trials" in page and "nope" in page
    for trial in table["trial"]:
        assert (out / "trials" / trial / "result.json").exists() and (out / "trials" / trial / "log.txt").exists()
    assert "Traceback" in (out / "trials" / table.loc["adapter", "trial"] / "log.txt").read_text()
    assert (out / "trials" / lora["trial"] / "comparison.csv").exists()
    assert f"failed: {table.loc['adapter', 'trial']}: MethodError" in captured.err


def test_address_without_ray_is_one_line(tiny_base, data_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "import_ray", lambda: None)
    config = _write_config(tmp_path, tiny_base, data_csv, {})
    assert main(["sweep", str(config), "--address", "auto", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["llmsignal: error: --address needs ray: pip install '.[distributed]'"]
    assert not (tmp_path / "o" / "trials").exists()


@pytest.mark.parametrize("text, message", [("methods: [lora", "not valid YAML"), ("methods: [dora]", "unknown method")])
def test_a_bad_config_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "grid.yaml").write_text(text)
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmsignal: error:") and message in err[0]


# --- (c) Ray -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """One private two-CPU Ray for the module: starting Ray takes seconds."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_sweep_on_ray_runs_in_parallel_and_resumes(local_ray, tiny_base, data_csv, tmp_path):
    # a strategy from a file, loaded by each worker; it always holds a position, so its Sharpe exists
    (tmp_path / "mine.py").write_text("from llmsignal.strategies import LLMSignalStrategy\n\n\n"
                                      "class AlwaysLong(LLMSignalStrategy):\n"
                                      "    def decide(self, signal):\n        return 1.0\n")
    grid = sweep.grid_from_dict({"methods": ["lora", "adapter"], "seeds": [0, 1], "data": [str(data_csv)],
                                 "base": tiny_base, "budget": {"quick": True},
                                 "strategies": ["ThresholdStrategy", "mine.py:AlwaysLong"]}, tmp_path)
    trials = sweep.expand(grid)
    out, registry = tmp_path / "out", tmp_path / "reg"
    results = sweep.run_sweep(trials, out, registry, progress=False)
    table, summary = sweep.write_outputs(out, results)
    assert len(table) == 4 * 2 and (table["status"] == "ok").all()  # a row per trial and strategy
    assert sorted(set(zip(table["method"], table["seed"], strict=True))) == [("adapter", 0), ("adapter", 1),
                                                                             ("lora", 0), ("lora", 1)]
    assert set(table["strategy"]) == {"ThresholdStrategy", "AlwaysLong"}
    traded = table[table["trades"] > 0]
    assert set(traded["strategy"]) >= {"AlwaysLong"}
    assert np.allclose(traded["daily_sharpe"] * np.sqrt(FX.periods_per_year), traded["sharpe"])
    assert table.loc[table["trades"] == 0, "daily_sharpe"].isna().all()
    assert {r["pid"] for r in results}.isdisjoint({os.getpid()})  # ran in Ray workers, not here
    assert pd.read_csv(out / "sweep.csv")["trial"].tolist() == table["trial"].tolist()
    assert set(summary["best"]["method"]) == {"lora", "adapter"}
    versions = _versions(registry)
    assert versions == {"bars-adapter": [1, 2], "bars-lora": [1, 2]}  # one entry per seed

    began = time.perf_counter()
    again = sweep.run_sweep(trials, out, registry, progress=False)
    assert time.perf_counter() - began < 5  # every result is on disk: nothing runs
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in results)

    lost = sweep.trial_folder(out, trials[0]) / "result.json"
    lost.unlink()
    again = sweep.run_sweep(trials, out, registry, progress=False)
    assert lost.exists() and len(again) == 4
    assert _versions(registry) == versions  # the rerun trial found its entry in the registry
