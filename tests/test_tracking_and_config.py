"""MLflow tracking, run config files, and the CLI habits people expect."""

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from llmsignal import __version__
from llmsignal.cli import build_parser, main, run_config
from llmsignal.config_file import defaults_from_file
from llmsignal.tracking import Tracking, TrackingError
from tests.conftest import synthetic_bars

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bars_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "bars.csv"
    synthetic_bars(500).to_csv(path)
    return path


def _config(argv: list[str]):
    """The RunConfig that `llmsignal run ARGV` would run, with any --config file applied as main applies it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        parser.run_parser.set_defaults(**defaults_from_file(args.config, parser.run_parser))
        args = parser.parse_args(argv)
    return run_config(args)


def test_the_example_config_is_the_default_run():
    assert _config(["run", "--config", str(ROOT / "examples" / "run.yaml")]) == _config(["run"])


def test_flags_override_the_file(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("methods: [lora, adapter]\nseed: 3\nsteps: 50\nparam: {lora.r: 4}\ncost: {spread_pips: 1.5}\n"
                    "strategy: [ProbabilityStrategy]\nstrategy_param: {dead_zone: 0.1}\ninputs: [close, ohlc]\n")
    config = _config(["run", "--config", str(file), "--seed", "7"])
    assert config.methods == ["lora", "adapter"] and config.seed == 7 and config.steps == 50
    assert config.inputs == ["close", "ohlc"] and _config(["run", "--config", str(file), "--inputs", "ohlc"]).inputs \
        == ["ohlc"]
    assert config.method_params == {"lora": {"r": "4"}} and config.costs.spread_pips == 1.5
    assert [(label, params) for label, _, params in config.strategies] == [("ProbabilityStrategy", {"dead_zone": 0.1})]


@pytest.mark.parametrize(("text", "message"), [("stpes: 10\n", "unknown key 'stpes'"),
                                                ("steps: -1\n", "steps: must be at least 1"),
                                                ("quick: yes please\n", "quick: must be true or false"),
                                                ("precision: float16\n", "'float16' is not one of"),
                                                ("inputs: [close, hlc]\n", "inputs: hlc is not one of close, ohlc"),
                                                ("- just\n- a list\n", "expected a mapping"),
                                                ("steps: [\n", "not valid YAML")])
def test_a_bad_config_is_one_line_before_any_work(tmp_path, capsys, text, message):
    file = tmp_path / "run.yaml"
    file.write_text(text)
    code = main(["run", "--config", str(file), "--registry", str(tmp_path / "reg"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(file) in err and message in err
    assert not (tmp_path / "reg").exists() and not (tmp_path / "out").exists()


def test_a_run_from_a_config_file_gives_the_same_outputs_as_its_flags(tiny_base, bars_file, tmp_path, capsys):
    flags = ["--quick", "--data", str(bars_file), "--base", tiny_base, "--methods", "lora,adapter", "--seed", "2",
             "--registry", str(tmp_path / "reg")]
    file = tmp_path / "run.yaml"
    file.write_text(f"quick: true\ndata: {bars_file}\nbase: {tiny_base}\nmethods: [lora, adapter]\nseed: 2\n"
                    f"registry: {tmp_path / 'reg'}\nout: {tmp_path / 'from-file'}\n")
    assert main(["-q", "run", *flags, "--out", str(tmp_path / "from-flags")]) == 0
    assert main(["-q", "run", "--config", str(file)]) == 0
    assert "it/s" not in capsys.readouterr().err  # -q: no progress bars
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "from-flags" / "comparison.csv"),
                                  pd.read_csv(tmp_path / "from-file" / "comparison.csv"))


def test_a_run_is_tracked_in_mlflow_and_read_back(tiny_base, bars_file, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    assert main(["-q", "run", "--quick", "--data", str(bars_file), "--base", tiny_base, "--methods", "lora,adapter",
                 "--registry", str(tmp_path / "reg"), "--out", str(tmp_path / "out"), "--strategy", "ThresholdStrategy",
                 "--track", f"mlflow:{store}"]) == 0
    mlflow.set_tracking_uri(store.as_uri())
    runs = mlflow.search_runs(experiment_names=["llmsignal"])
    parent = runs[runs["tags.mlflow.runName"] == "comparison"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert len(parent) == 1 and sorted(children["tags.mlflow.runName"]) == sorted(table["method"])
    lora = children[children["tags.mlflow.runName"] == "lora"].iloc[0]
    assert lora["metrics.mse"] == pytest.approx(table.set_index("method").loc["lora", "mse"])
    assert lora["params.r"] == "8" and lora["params.steps"] == "6" and lora["tags.verdict"]
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(lora["run_id"], "train_loss")] == list(range(6))
    assert [a.path for a in client.list_artifacts(lora["run_id"], "tearsheets")] == ["tearsheets/lora.html"]
    assert {a.path for a in client.list_artifacts(parent["run_id"].iloc[0])} >= {"comparison.html", "comparison.csv"}


def test_tracking_without_mlflow_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(TrackingError, match=r"pip install 'llmsignal\[mlflow\]'"):
        Tracking.parse("mlflow")
    code = main(["run", "--track", "mlflow", "--registry", str(tmp_path / "reg"), "--out", str(tmp_path / "out")])
    assert code == 2 and "llmsignal[mlflow]" in capsys.readouterr().err and not (tmp_path / "reg").exists()
    monkeypatch.setenv("LLMSIGNAL_TRACKING_URI", str(tmp_path / "mlruns"))
    with pytest.raises(TrackingError):
        Tracking.parse(None)


@pytest.mark.parametrize("uri, said", [("/proc/llmsignal-x", "cannot open the store"),
                                       ("bogus://x", "cannot open the store"),
                                       ("sqlite:///mlflow.db", "pip install mlflow")])
def test_a_store_that_cannot_work_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, uri, said):
    monkeypatch.chdir(tmp_path)
    if uri.startswith("sqlite"):
        monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # mlflow-skinny, as the [mlflow] extra installs it
    code = main(["run", "--track", f"mlflow:{uri}", "--registry", str(tmp_path / "reg"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and said in err[0] and f"mlflow:{uri}" in err[0]
    assert not (tmp_path / "reg").exists() and not (tmp_path / "out").exists()


def test_version_and_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"llmsignal {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit status:" in capsys.readouterr().out


def test_quiet_silences_mlflows_own_log_lines(tmp_path):
    """MLflow sets its logger's level when imported (after -q is read): -q must reach it all the same."""
    import subprocess

    pytest.importorskip("mlflow")
    lines = {}
    for quiet in (False, True):
        argv = [sys.executable, "-m", "llmsignal", *(["-q"] if quiet else []), "run", "--methods", "nope",
                "--track", f"mlflow:{tmp_path / f'store-{quiet}'}", "--registry", str(tmp_path / "reg"),
                "--out", str(tmp_path / "out")]
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_LOGGING_LEVEL", "TQDM_DISABLE")}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)  # as a shell starts it
        lines[quiet] = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and lines[quiet][-1].startswith("llmsignal: error:")
    assert lines[True] == lines[False][-1:] and len(lines[False]) > 1  # MLflow speaks unless told not to
