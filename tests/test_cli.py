import json
import re

import numpy as np
import pandas as pd
import pytest

from llmsignal.backtests.results import row_key
from llmsignal.cli import main


@pytest.fixture(scope="module")
def quick_run(tiny_base, tmp_path_factory):
    from tests.conftest import synthetic_bars

    folder = tmp_path_factory.mktemp("run")
    data = folder / "bars.csv"
    synthetic_bars(500).to_csv(data)
    code = main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(folder / "reg"),
                 "--out", str(folder / "out"), "--methods", "full,lora,adapter", "--strategy", "ThresholdStrategy"])
    return code, folder, data


def test_run_writes_the_output_contract(quick_run):
    code, folder, _ = quick_run
    assert code == 0
    out = folder / "out"
    table = pd.read_csv(out / "comparison.csv")
    # the README's contract, written out here rather than read from the writer's own constant
    assert list(table.columns[:17]) == ["method", "kind", "strategy", "inputs", "mse", "mae", "relmae", "mase",
                                        "directional_accuracy", "da_base_rate", "da_pvalue", "sharpe", "total_return",
                                        "max_drawdown", "trades", "commission", "swap"]
    assert dict(zip(table["method"], table["inputs"], strict=True)) == {  # har-range reads ranges
        m: "ohlc" if m == "har-range" else "close" for m in table["method"]}
    for column in ("trainable_params", "train_seconds", "peak_memory_mb", "saved_mb", "predict_ms_per_bar",
                   "dm_pvalue", "verdict"):
        assert column in table.columns
    for column in ("log_score", "crps", "coverage_90", "calibration_error", "qlike", "ls_holm", "crps_holm",
                   "ls_holm_range", "crps_holm_range", "distribution_verdict"):
        assert column in table.columns
    assert list(table["method"]) == ["full", "lora", "adapter", "naive", "drift", "ar", "garch", "har-range",
                                     "climatology"]
    verdicts = table.set_index("method")["distribution_verdict"]
    assert "garch's" in verdicts["lora"] and "har-range's" in verdicts["lora"]  # tested against both references
    volatility = pd.read_csv(out / "volatility.csv")  # every moving sigma sizing a long position, and one control
    assert {"full", "lora", "adapter", "garch", "har-range"} <= set(volatility["method"])
    assert volatility["sharpe"].notna().all() and volatility["spearman"].isna().sum() == 1
    assert table[["log_score", "crps", "coverage_90", "calibration_error", "qlike"]].notna().all().all()
    llm = table[table["kind"] == "llm"].set_index("method")
    assert llm.loc["full", "trainable_params"] > 10 * llm.loc["lora", "trainable_params"]
    assert (llm["train_seconds"] > 0).all() and (llm["saved_mb"] > 0).all()
    assert table.set_index("method").loc["naive", "relmae"] == pytest.approx(1.0)
    assert table["mase"].notna().all()  # Hyndman's, scaled by the naive MAE on the training bars
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns[:11]) == ["timestamp", "method", "close", "forecast", "p_up", "sigma", "q05",
                                              "q25", "q50", "q75", "q95"]
    assert list(predictions.columns[11:13]) == ["bin_step", "bin00"]  # the distribution, for exact rescoring
    quantiles = predictions[["q05", "q25", "q50", "q75", "q95"]].to_numpy()
    assert (predictions["sigma"] > 0).all() and (np.diff(quantiles, axis=1) > 0).all()
    assert predictions.groupby("method").size().nunique() == 1
    for method in table["method"]:
        assert method in (out / "tearsheets" / f"{method}.html").read_text()
    page = (out / "comparison.html").read_text()
    assert "data:image/png;base64" in page and "tearsheets/lora.html" in page
    assert "tearsheets/all.html" in page and (out / "tearsheets" / "all.html").is_file()
    assert set(json.loads((out / "timings.json").read_text())) == {"data", "train", "predict", "backtest", "report"}


def test_stages_run_alone_from_the_cli(quick_run, tmp_path, capsys):
    _, folder, data = quick_run
    preds = tmp_path / "lora.csv"
    quick_windows = json.loads((folder / "out" / "settings.json").read_text())["settings"]["forecasts"].split()[0]
    assert quick_windows == "16"  # --quick shares windows; the stage alone must be asked for the same
    assert main(["predict", "--entry", "bars-lora", "--registry", str(folder / "reg"), "--data", str(data),
                 "--out", str(preds), "--forecasts-per-pass", quick_windows]) == 0
    frame = pd.read_csv(preds, index_col=0, parse_dates=[0])
    run_preds = pd.read_csv(folder / "out" / "predictions.csv", parse_dates=["timestamp"])
    lora = run_preds[run_preds["method"] == "lora"].set_index("timestamp")
    assert list(frame.columns[:9]) == ["close", "forecast", "p_up", "sigma", "q05", "q25", "q50", "q75", "q95"]
    pd.testing.assert_frame_equal(frame, lora.drop(columns="method"), check_names=False, check_freq=False)
    assert main(["backtest", "--predictions", str(preds), "--data", str(data), "--out", str(tmp_path / "bt")]) == 0
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert metrics["relmae"] == pytest.approx(pd.read_csv(folder / "out" / "comparison.csv")
                                              .set_index("method").loc["lora", "relmae"])


def test_faster_prediction_options_reuse_the_entry_and_are_recorded(quick_run, tiny_base, tmp_path):
    _, folder, data = quick_run
    out = tmp_path / "fast"
    assert main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(folder / "reg"),
                 "--out", str(out),
                 "--methods", "lora", "--forecasts-per-pass", "4", "--precision", "bfloat16"]) == 0
    table = pd.read_csv(out / "comparison.csv").drop_duplicates("method").set_index("method")
    exact = pd.read_csv(folder / "out" / "comparison.csv").set_index("method")
    assert table.loc["lora", "entry"] == exact.loc["lora", "entry"]  # the same tuned weights, not retrained
    settings = json.loads((out / "settings.json").read_text())["settings"]
    assert settings["forecasts"].startswith("4 bars share a window") and "bfloat16" in settings["forecasts"]
    fast = pd.read_csv(out / "predictions.csv").query("method == 'lora'")["forecast"].to_numpy()
    slow = pd.read_csv(folder / "out" / "predictions.csv").query("method == 'lora'")["forecast"].to_numpy()
    assert len(fast) == len(slow) and not (fast == slow).all()
    assert abs(np.log(fast / slow)).max() * 1e4 < 10  # basis points: shorter contexts, same model


@pytest.mark.parametrize("args, message", [
    (["--methods", "full,dora"], "unknown method 'dora'"),
    (["--base", "/no/such/folder"], "does not exist"),
    (["--data", "{missing}"], "no such file"),
    (["--data", "{bad}"], "timestamps are not sorted"),
    (["--forecasts-per-pass", "49"], "between 1 and the context (48)"),
    (["--forecasts-per-pass", "0"], "between 1 and the context (48)"),
])
def test_bad_input_is_one_line_and_keeps_the_registry(quick_run, tmp_path, capsys, args, message):
    _, folder, data = quick_run
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(data)
    pd.concat([frame.iloc[:300], frame.iloc[310:], frame.iloc[300:310]]).to_csv(bad, index=False)
    args = [a.format(missing=tmp_path / "missing.csv", bad=bad) for a in args]
    before = sorted(p.relative_to(folder) for p in (folder / "reg").rglob("*") if ".cache" not in p.parts)
    code = main(["run", "--quick", "--registry", str(folder / "reg"), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("llmsignal: error:") and message in err[0]
    after = sorted(p.relative_to(folder) for p in (folder / "reg").rglob("*") if ".cache" not in p.parts)
    assert before == after


def test_strategy_grid_and_a_user_file(quick_run, tiny_base, tmp_path):
    _, folder, data = quick_run
    user = tmp_path / "elsewhere" / "mine.py"
    user.parent.mkdir()
    user.write_text("from llmsignal.strategies import LLMSignalStrategy\n\n\nclass AlwaysLong(LLMSignalStrategy):\n"
                    "    def decide(self, signal):\n        return 1.0\n")
    out = tmp_path / "grid"
    code = main(["run", "--quick", "--data", str(data), "--registry", str(folder / "reg"), "--out", str(out),
                 "--methods", "lora", "--base", tiny_base, "--strategy", "ThresholdStrategy",
                 "--strategy", f"{user}:AlwaysLong", "--strategy-param", "ThresholdStrategy.threshold_bps=2"])
    assert code == 0
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["strategy"].unique()) == ["AlwaysLong", "ThresholdStrategy"]
    assert len(table) == 2 * 7  # lora and six baselines, under each strategy
    always = table[table["strategy"] == "AlwaysLong"]
    assert (always["trades"] == 1).all()  # one long position held from the first bar, whatever the forecast
    assert always["total_return"].nunique() == 1
    assert (out / "tearsheets" / "lora-AlwaysLong.html").exists()


def test_unknown_strategy_lists_the_shipped_ones(capsys):
    assert main(["run", "--quick", "--strategy", "Nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'Nope'" in err and "ThresholdStrategy" in err and "ProbabilityStrategy" in err


def test_walk_forward_reports_each_fold(quick_run, tiny_base, tmp_path):
    _, folder, data = quick_run
    out = tmp_path / "wf"
    assert main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(tmp_path / "reg"),
                 "--out", str(out), "--methods", "lora", "--walk-forward", "3", "--strategy", "ThresholdStrategy"]) == 0
    folds = pd.read_csv(out / "folds.csv", parse_dates=["start", "end"])
    assert sorted(folds["fold"].unique()) == [1, 2, 3] and len(folds) == 3 * 7  # lora and six baselines
    pooled = pd.read_csv(out / "comparison.csv").set_index("method")
    assert len(pooled) == 7 and "har-range" in set(folds["method"])
    assert "Walk-forward folds" in (out / "comparison.html").read_text()
    assert main(["compare", str(out), "--out", str(tmp_path / "again")]) == 0
    assert "Walk-forward folds" in (tmp_path / "again" / "comparison.html").read_text()
    entries = sorted((tmp_path / "reg" / "bars-lora").glob("*/metadata.json"))
    assert len(entries) == 3  # one model per fold
    for meta, (_, fold) in zip(entries, folds[folds["method"] == "lora"].sort_values("fold").iterrows(),
                               strict=True):
        split = json.loads(meta.read_text())["split"]
        assert pd.Timestamp(split["val"][1]) < fold["start"] == pd.Timestamp(split["test"][0])


def test_compare_rebuilds_the_page_from_saved_runs(quick_run, tmp_path, capsys):
    _, folder, _ = quick_run
    run = folder / "out"
    assert main(["compare", str(run), "--out", str(tmp_path / "one")]) == 0
    original, rebuilt = pd.read_csv(run / "comparison.csv"), pd.read_csv(tmp_path / "one" / "comparison.csv")
    pd.testing.assert_frame_equal(original, rebuilt)
    assert (tmp_path / "one" / "tearsheets" / "lora.html").exists()
    other = tmp_path / "other"
    import shutil

    shutil.copytree(run, other)
    assert main(["compare", str(run), str(other), "--out", str(tmp_path / "two")]) == 0
    both = pd.read_csv(tmp_path / "two" / "comparison.csv")
    assert len(both) == 2 * len(original) and "other/lora" in set(both["method"])
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not an llmsignal run folder" in capsys.readouterr().err


def test_side_by_side_tearsheet_survives_a_large_grid(quick_run, tiny_base, tmp_path):
    _, folder, data = quick_run
    out = tmp_path / "big"
    code = main(["run", "--quick", "--data", str(data), "--registry", str(folder / "reg"), "--out", str(out),
                 "--methods", "full,lora,adapter", "--base", tiny_base, "--strategy", "ThresholdStrategy",
                 "--strategy", "ProbabilityStrategy", "--strategy", "EnsembleStrategy",
                 "--strategy-param", "ThresholdStrategy.threshold_bps=0"])
    table = pd.read_csv(out / "comparison.csv")
    assert code == 0 and len(table) == 3 * 9  # three methods and six baselines, under each strategy
    keys = re.findall(r'data-key="([^"]*)"', (out / "tearsheets" / "all.html").read_text())
    # every row, traded or not, and buy & hold (no key) under each strategy
    assert sorted(k for k in keys if k) == sorted(row_key(m, s, 3) for m, s in zip(table["method"], table["strategy"],
                                                                                   strict=True))
    assert keys.count("") == 3 and all((out / "tearsheets" / f"{key}.html").is_file() for key in keys if key)


def test_a_hyper_parameter_of_the_wrong_type_is_one_line(quick_run, tiny_base, tmp_path, capsys):
    _, _, data = quick_run
    code = main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--methods", "lora",
                 "--registry", str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--param", "lora.r=4.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["llmsignal: error: method 'lora': r='4.5' is not a int"]


def test_a_test_period_of_a_few_hours_still_reports(quick_run, tiny_base, tmp_path):
    _, _, data = quick_run
    code = main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--methods", "lora",
                 "--registry", str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--test", "0.02"])
    table = pd.read_csv(tmp_path / "o" / "comparison.csv")
    assert code == 0 and table["deflated_sharpe"].isna().all()  # two days are too few to deflate


def test_backtest_of_forecasts_for_other_bars_says_so(quick_run, tmp_path, capsys):
    _, folder, _ = quick_run
    preds = pd.read_csv(folder / "out" / "predictions.csv")
    one = preds[preds["method"] == "lora"].drop(columns="method")
    one.to_csv(tmp_path / "lora.csv", index=False)
    assert main(["backtest", "--predictions", str(tmp_path / "lora.csv"), "--out", str(tmp_path / "bt")]) == 2
    assert "fewer than 2 timestamps in common" in capsys.readouterr().err


def test_an_old_predictions_file_backtests_and_a_strategy_that_needs_sigma_says_so_in_one_line(quick_run, tmp_path,
                                                                                                 capsys):
    _, folder, data = quick_run
    preds = pd.read_csv(folder / "out" / "predictions.csv")
    old = preds[preds["method"] == "lora"][["timestamp", "close", "forecast", "p_up"]]  # llmsignal 0.2's columns
    old.to_csv(tmp_path / "old.csv", index=False)
    args = ["backtest", "--predictions", str(tmp_path / "old.csv"), "--data", str(data)]
    assert main([*args, "--out", str(tmp_path / "bt")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "vt"), "--strategy", "VolatilityTargetStrategy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmsignal: error: VolatilityTargetStrategy needs the forecast's sigma")
    preds[preds["method"] == "lora"].drop(columns="method").to_csv(tmp_path / "new.csv", index=False)
    assert main(["backtest", "--predictions", str(tmp_path / "new.csv"), "--data", str(data), "--out",
                 str(tmp_path / "vt"), "--strategy", "VolatilityTargetStrategy"]) == 0



def _strict(path):
    """A JSON file read by a parser that refuses NaN and infinities, as JavaScript's does."""
    def refuse(constant):
        raise ValueError(f"{path}: bare {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("method", ["lora", "garch", "har-range"])
def test_backtest_of_a_runs_predictions_reproduces_its_row(quick_run, tmp_path, method):
    _, folder, data = quick_run
    out = tmp_path / "bt"
    assert main(["backtest", "--predictions", str(folder / "out" / "predictions.csv"), "--method", method,
                 "--data", str(data), "--out", str(out)]) == 0
    row = pd.read_csv(folder / "out" / "comparison.csv").set_index("method").loc[method]
    metrics = _strict(out / "metrics.json")
    for name in ("mse", "mase", "directional_accuracy", "log_score", "crps", "coverage_90", "qlike", "sharpe",
                 "total_return", "max_drawdown", "trades", "commission", "swap"):
        if metrics[name] is None:  # strict JSON: what the row has as NaN (har-range calls no direction)
            assert pd.isna(row[name]), name
        else:
            assert metrics[name] == pytest.approx(row[name], rel=1e-12, abs=1e-15), name
    assert metrics["strategy"] == row["strategy"] == "ThresholdStrategy"
    assert f"{method} (ThresholdStrategy)" in (out / "tearsheet.html").read_text()


def test_bars_without_a_range_leave_har_range_out_with_one_warning(tiny_base, tmp_path, capsys):
    from tests.conftest import synthetic_bars

    bars = synthetic_bars(400)
    for column in ("Open", "High", "Low"):  # closes only, as a file of closes repeated
        bars[column] = bars["Close"]
    bars.to_csv(tmp_path / "closes.csv")
    out = tmp_path / "out"
    assert main(["run", "--quick", "--data", str(tmp_path / "closes.csv"), "--base", tiny_base, "--methods",
                 "zero-shot", "--registry", str(tmp_path / "reg"), "--out", str(out)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "har-range" in line]
    assert len(said) == 1 and said[0].startswith("llmsignal: warning: har-range left out: the bars have no high-low")
    table = pd.read_csv(out / "comparison.csv")
    assert "har-range" not in set(table["method"]) and "garch" in set(table["method"])
    assert said[0].removeprefix("llmsignal: warning: ") in json.loads((out / "settings.json").read_text())["warnings"]
    assert table["ls_holm_range"].isna().all()


def test_backtest_trades_one_strategy_and_says_so(quick_run, tmp_path, capsys):
    _, folder, data = quick_run
    code = main(["backtest", "--predictions", str(folder / "out" / "predictions.csv"), "--method", "lora",
                 "--data", str(data), "--out", str(tmp_path / "bt"), "--strategy", "ThresholdStrategy",
                 "--strategy", "ProbabilityStrategy"])
    assert code == 2
    assert "--strategy given 2 times" in capsys.readouterr().err
    assert not (tmp_path / "bt").exists()


def test_a_metric_declared_once_appears_in_every_output(quick_run, tiny_base, tmp_path, monkeypatch):
    from llmsignal import sweep
    from llmsignal.backtests import results

    _, folder, data = quick_run
    dummy = results.Metric("bars_scored", "higher", sweep=True, compute=lambda predictions, backtest: len(predictions))
    monkeypatch.setattr(results, "METRICS", [*results.METRICS, dummy])
    out = tmp_path / "out"  # the quick run's registry: its entries and forecasts are reused, nothing trains
    assert main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(folder / "reg"),
                 "--out", str(out), "--methods", "full,lora,adapter"]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert (table["bars_scored"] > 0).all()
    assert ">bars_scored</th>" in (out / "comparison.html").read_text()
    assert main(["compare", str(out), str(folder / "out"), "--out", str(tmp_path / "both")]) == 0
    assert "bars_scored" in pd.read_csv(tmp_path / "both" / "comparison.csv").columns
    assert main(["backtest", "--predictions", str(out / "predictions.csv"), "--method", "lora", "--data", str(data),
                 "--out", str(tmp_path / "bt")]) == 0
    lora = table.drop_duplicates("method").set_index("method").loc["lora"]  # the first strategy's row
    assert _strict(tmp_path / "bt" / "metrics.json")["bars_scored"] == lora["bars_scored"]
    assert "bars_scored" in sweep.columns()
    rows = sweep.trial_rows(sweep.Trial("lora", 0, {}, str(data), [{"label": "ThresholdStrategy",
                                                                   "spec": "ThresholdStrategy", "params": {}}],
                                        tiny_base, {"quick": True}), tmp_path / "trial", folder / "reg")
    assert rows[0]["bars_scored"] > 0


def test_compare_of_two_runs_says_what_its_table_shows(quick_run, tiny_base, tmp_path, capsys):
    from llmsignal.backtests.significance import holm

    _, folder, data = quick_run
    other = tmp_path / "contrarian"  # the same models under another strategy: entries and forecasts are reused
    assert main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(folder / "reg"),
                 "--out", str(other), "--methods", "full,lora,adapter", "--strategy", "ProbabilityStrategy"]) == 0
    answer = capsys.readouterr().out.splitlines()  # the terminal's answer: the headline, the rows that matter
    assert len(answer) <= 15 and answer[0].startswith(("None beats the baselines", "Use "))
    assert [line.split()[0] for line in answer if line.split()[:1] in (["full"], ["lora"], ["naive"])] == \
        ["full", "lora", "naive"]
    both = tmp_path / "both"
    assert main(["compare", str(folder / "out"), str(other), "--out", str(both)]) == 0
    table = pd.read_csv(both / "comparison.csv")
    assert len(table) == 2 * len(pd.read_csv(other / "comparison.csv"))
    methods = table.drop_duplicates("method")
    tested = methods[methods["dm_pvalue"].notna()]
    assert len(tested) == len(methods) - 1  # every forecaster of both runs, against one reference
    assert np.allclose(tested["dm_holm"], holm(list(tested["dm_pvalue"])))
    traded = table[table["sharpe_pvalue"].notna()]
    assert traded["method"].str.startswith("contrarian/").any() and traded["method"].str.startswith("out/").any()
    assert np.allclose(traded["sharpe_holm"], holm(list(traded["sharpe_pvalue"])))
    page = (both / "comparison.html").read_text()
    counted = re.search(r"(\d+) of (\d+) forecasters are in the confidence set of the most accurate, (\S+) (\w+)",
                        page)
    if counted:  # the headline when no method beats the reference
        in_set, shown, reference, said = counted.groups()
        assert (int(in_set), int(shown)) == (int(methods["in_mcs"].sum()), len(methods))
        assert said == ("among" if methods.set_index("method").loc[reference, "in_mcs"] else "not")
    assert f"after correcting for {int((methods['kind'] == 'llm').sum())} methods" in page or not counted
    assert page.count("recomputed across all") == 1


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 96 KiB file system: too small for a tearsheet. Skips where this machine cannot mount one."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(quick_run, tiny_disk, capsys):
    _, folder, data = quick_run
    code = main(["backtest", "--predictions", str(folder / "out" / "predictions.csv"), "--method", "lora",
                 "--data", str(data), "--out", str(tiny_disk / "bt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0]
    left = [p for p in tiny_disk.rglob("*") if p.is_file()]
    assert left == []  # the tearsheet came first and did not fit: nothing half-written stays


@pytest.mark.parametrize("where", ["a-file/out", "/proc/llmsignal-out"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, where):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / where if not where.startswith("/") else where
    code = main(["run", "--out", str(out), "--registry", str(tmp_path / "reg")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"llmsignal: error: --out {out}")
    assert not (tmp_path / "reg").exists()


def test_quiet_shows_no_progress_bar(quick_run, tmp_path):
    import subprocess
    import sys

    _, folder, data = quick_run
    argv = ["predict", "--entry", "bars-lora", "--registry", str(folder / "reg"), "--data", str(data), "--out",
            str(tmp_path / "p.csv"), "--forecasts-per-pass", "16"]
    for quiet in (False, True):
        done = subprocess.run([sys.executable, "-m", "llmsignal", *(["-q"] if quiet else []), *argv],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("bar/s" in done.stderr) is not quiet  # the bar shows without -q, so its absence means something


def test_a_full_registry_disk_is_one_line_and_leaves_no_partial_file(tiny_base, tiny_disk, tmp_path, capsys):
    from tests.conftest import synthetic_bars

    data = tmp_path / "bars.csv"
    synthetic_bars(400).to_csv(data)
    code = main(["train", "--quick", "--method", "full", "--data", str(data), "--base", tiny_base,
                 "--registry", str(tiny_disk / "reg")])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("llmsignal:")]  # the rest: the training's bar
    assert code == 2 and "Traceback" not in err and len(said) == 1, err[-2000:]
    assert said[0].startswith(f"llmsignal: error: {tiny_disk / 'reg'}") and "bytes free" in said[0]
    left = [p for p in tiny_disk.rglob("*") if p.is_file()]
    assert all(not p.name.endswith(".tmp") and not p.parent.name.startswith(".staging") for p in left), left


def test_close_and_ohlc_inputs_make_a_row_per_method_and_kind(quick_run, tiny_base, tmp_path, capsys):
    """One run tunes each method on closes and on OHLC bars and the page sets the two side by side; a base too short
    for 49 bars of OHLC text (the tiny one: 192 positions) is one line before any training."""
    _, folder, data = quick_run
    registry = tmp_path / "reg"
    assert main(["run", "--quick", "--data", str(data), "--base", tiny_base, "--registry", str(registry),
                 "--out", str(tmp_path / "short"), "--methods", "lora", "--inputs", "close,ohlc"]) == 2
    assert "245 tokens, more than its 192 positions" in capsys.readouterr().err and not registry.exists()
    out = tmp_path / "both"
    assert main(["run", "--quick", "--data", str(data), "--registry", str(registry), "--out", str(out),
                 "--methods", "full,lora,adapter", "--inputs", "close,ohlc",
                 "--strategy", "ThresholdStrategy"]) == 0  # the embedded base: 256 positions
    table = pd.read_csv(out / "comparison.csv")
    tuned = table[table["kind"] == "llm"]
    assert list(zip(tuned["method"], tuned["inputs"], strict=True)) == [
        ("full", "close"), ("lora", "close"), ("adapter", "close"),
        ("full-ohlc", "ohlc"), ("lora-ohlc", "ohlc"), ("adapter-ohlc", "ohlc")]
    baselines = table[table["kind"] == "baseline"]
    assert dict(zip(baselines["method"], baselines["inputs"], strict=True)) == {
        m: "ohlc" if m == "har-range" else "close" for m in baselines["method"]}
    assert tuned[["log_score", "crps"]].notna().all().all()
    entry = json.loads((registry / "bars-lora-ohlc" / "1" / "metadata.json").read_text())
    assert entry["inputs"] == "ohlc" and entry["codec"]["range_step"] > 0
    page = (out / "comparison.html").read_text()
    assert "Close against OHLC inputs" in page and "tearsheets/lora-ohlc.html" in page


def test_by_default_run_trades_two_strategies_and_a_plain_param_reaches_those_that_take_it(tmp_path, capsys):
    from llmsignal.cli import build_parser, run_config

    config = run_config(build_parser().parse_args(["run", "--strategy-param", "threshold_bps=2",
                                                   "--strategy-param", "stop_atr=3"]))
    assert [(label, params) for label, _, params in config.strategies] == [
        ("ThresholdStrategy", {"threshold_bps": 2.0, "stop_atr": 3.0}), ("SideStrategy", {"stop_atr": 3.0})]
    assert main(["run", "--strategy-param", "nope=1", "--registry", str(tmp_path / "r")]) == 2
    assert "ThresholdStrategy takes no parameter nope" in capsys.readouterr().err and not (tmp_path / "r").exists()
