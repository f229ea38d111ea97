"""What an attacker or a careless user can hand llmsignal: each gets one line, a non-zero exit, nothing written.

The numbers in the test names are the cases of the hardening issue (#16).
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsignal.cli import main
from llmsignal.data import load_bars
from llmsignal.finetune.bars import DataError, split_bars
from llmsignal.finetune.base import load_base
from llmsignal.finetune.methods import make_method
from llmsignal.finetune.train import TrainConfig
from llmsignal.models.entries import entry_registry, request_key, train_entry
from llmsignal.models.registry import Registry, RegistryError
from tests.conftest import TINY_CONTEXT, synthetic_bars, tiny_entries


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("llmsignal: error: "), err[-1500:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    return tiny_entries(tmp_path_factory.mktemp("bad"), tiny_base, ("lora",), bars=400, prefix="ok")


class Planted:
    """Unpickling this writes a file: what a planted checkpoint would do with weights_only=False."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the planted file's pickle
def test_1_a_planted_checkpoint_runs_no_code_on_resume(tiny_base, tmp_path):
    bars = load_bars(_csv(tmp_path, 400))
    split = split_bars(bars, context=TINY_CONTEXT)
    base, method, registry = load_base(tiny_base), make_method("lora"), Registry(tmp_path / "reg")
    config = TrainConfig(steps=3, batch_size=4, window=TINY_CONTEXT + 1)
    key = request_key(split, base, method, config, TINY_CONTEXT)
    (registry.root / ".checkpoints").mkdir(parents=True)
    marker = tmp_path / "ran"
    (registry.root / ".checkpoints" / f"victim-{key}.pt").write_bytes(pickle.dumps({"model": Planted(str(marker))}))
    with pytest.raises(RegistryError, match="not a checkpoint that llmsignal wrote"):
        train_entry(split, base, method, registry, "victim", config, "bars.csv", TINY_CONTEXT, resume=True)
    assert not marker.exists() and registry.versions("victim") == []
    with pytest.raises(RegistryError, match="invalid entry name"):  # checked before any path is built from it
        train_entry(split, base, method, registry, "../escape", config, "bars.csv", TINY_CONTEXT, resume=True)


def test_2_registry_rm_cannot_leave_the_registry(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "1").mkdir()
    (victim / "1" / "metadata.json").write_text("{}")
    reg = tmp_path / "reg"
    reg.mkdir()
    code, err = _cli(capsys, "registry", "rm", "../victim", "--registry", reg)
    assert code == 2 and "invalid entry name '../victim'" in _one_line(err)
    assert (victim / "1" / "metadata.json").exists()


def test_3_import_refuses_symbolic_links(trained, tmp_path, capsys):
    entries, _, _ = trained
    export = tmp_path / "export"
    Registry(entries["lora"].path.parent.parent).export(entries["lora"].ref, export)
    secret = tmp_path / "host-secret"
    secret.write_bytes((export / "adapter_model.safetensors").read_bytes())
    (export / "adapter_model.safetensors").unlink()
    (export / "adapter_model.safetensors").symlink_to(secret)
    code, err = _cli(capsys, "registry", "import", export, "--registry", tmp_path / "reg")
    assert code == 2 and "adapter_model.safetensors is a symbolic link" in _one_line(err)
    assert not (tmp_path / "reg").exists() or Registry(tmp_path / "reg").names() == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.pop("codec"), "codec"),
    (lambda m: m.update(method="dora"), "unknown method 'dora'"),
    (lambda m: m["codec"].update(context=100000), "codec context 100000 is not 1 to"),
    (lambda m: m.update(method_params={"r": -4}), "must be positive"),
])
def test_4_imported_metadata_that_cannot_be_served_is_refused_and_listed_invalid(trained, tmp_path, capsys, change,
                                                                                 message):
    entries, _, _ = trained
    export = tmp_path / "export"
    Registry(entries["lora"].path.parent.parent).export(entries["lora"].ref, export)
    meta = json.loads((export / "metadata.json").read_text())
    change(meta)
    (export / "metadata.json").write_text(json.dumps(meta))
    code, err = _cli(capsys, "registry", "import", export, "--registry", tmp_path / "reg")
    assert code == 2 and message in _one_line(err)
    # copied in by hand instead: listed as invalid, and predict says why in one line
    hand = tmp_path / "reg" / "hand" / "1"
    shutil.copytree(export, hand)
    meta.update(name="hand", version=1)
    (hand / "metadata.json").write_text(json.dumps(meta))
    [row] = entry_registry(tmp_path / "reg").list_rows()
    assert row["status"].startswith("invalid:") and message in row["status"]
    code, err = _cli(capsys, "predict", "--entry", "hand", "--registry", tmp_path / "reg", "--out",
                     tmp_path / "f.csv", "--data", entries["lora"].metadata["data"])
    assert code == 2 and message in _one_line(err) and not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"[]"])
def test_6_a_damaged_version_is_reported_skipped_and_never_reused(trained, tmp_path, capsys, content):
    entries, _, _ = trained
    reg = Registry(tmp_path / "reg")
    good = reg.save("m", {"w.bin": entries["lora"].file("adapter_model.safetensors")}, {"method": "lora"})
    bad = reg.save("m", {"w.bin": entries["lora"].file("adapter_model.safetensors")}, {"method": "lora"})
    (bad.path / "metadata.json").write_bytes(content)
    (reg.root / "m" / "3").mkdir()  # a version folder cut short: no metadata at all
    code, err = _cli(capsys, "registry", "show", "m@2", "--registry", reg.root)
    assert code == 2 and "m@2 has unreadable metadata" in _one_line(err)
    code, err = _cli(capsys, "registry", "show", "m@3", "--registry", reg.root)
    assert code == 2 and "m@3 is damaged" in _one_line(err)
    assert reg.get("m").version == good.version  # the latest version that reads
    statuses = {row["version"]: row["status"] for row in reg.list_rows()}
    assert statuses[1] == "ok" and statuses[2].startswith("corrupted") and statuses[3].startswith("corrupted")
    assert reg.save("m", {"w.bin": entries["lora"].file("adapter_model.safetensors")}, {}).version == 4


@pytest.mark.parametrize("name", ["a\x00b", "x" * 300, "two\nlines", ".hidden", "../up", "a/b", ""])
def test_7_one_naming_rule_for_every_command(tmp_path, capsys, name):
    for argv in (["registry", "show", name], ["registry", "rm", name], ["registry", "export", name, tmp_path / "e"],
                 ["predict", "--entry", name, "--out", tmp_path / "f.csv"]):
        code, err = _cli(capsys, *argv, "--registry", tmp_path / "reg")
        assert code == 2 and "invalid entry name" in _one_line(err)
    code, err = _cli(capsys, "train", "--method", "lora", "--name", name, "--registry", tmp_path / "reg")
    assert code == 2 and "invalid entry name" in _one_line(err)
    assert not (tmp_path / "reg").exists() or not any((tmp_path / "reg").iterdir())


@pytest.mark.parametrize(("body", "message"), [("raise RuntimeError('boom')", "decide raised RuntimeError: boom"),
                                                ("return None", "decide returned None"),
                                                ("return 'long'", "decide returned 'long'"),
                                                ("return 2.0", "decide returned exposure 2.0")])
def test_9_a_broken_strategy_is_one_line_before_any_training(tmp_path, capsys, body, message):
    strategy = tmp_path / "mine.py"
    strategy.write_text("from llmsignal.strategies import LLMSignalStrategy\n\n\nclass Mine(LLMSignalStrategy):\n"
                        f"    def decide(self, signal):\n        {body}\n")
    code, err = _cli(capsys, "run", "--quick", "--data", _csv(tmp_path, 400), "--methods", "lora", "--strategy",
                     f"{strategy}:Mine", "--registry", tmp_path / "reg", "--out", tmp_path / "out")
    line = _one_line(err)
    assert code == 2 and message in line and "Mine" in line and "mine.py" in line
    assert not (tmp_path / "reg").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], "--steps: must be at least 1, got 0"), (["--steps", "-5"], "--steps: must be at least 1"),
    (["--param", "lora.r=-4"], "method 'lora': r='-4' must be positive"),
    (["--methods", ""], "--methods '' names no method"),
    (["--cost", "spread_pips=-1"], "cost spread_pips='-1' is out of range"),
    (["--cost", "spred_pips=1"], "unknown cost 'spred_pips'")])
def test_10_bad_numbers_and_empty_lists_are_refused_before_any_work(tmp_path, capsys, argv, message):
    try:
        code = main(["run", "--quick", "--data", str(_csv(tmp_path, 400)), "--methods", "lora",
                     "--registry", str(tmp_path / "reg"), "--out", str(tmp_path / "out"), *argv])
    except SystemExit as stop:  # argparse's own refusal: usage, then the error line
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "reg").exists() and not (tmp_path / "out").exists()


def test_10_an_infinite_close_is_refused(tmp_path):
    bars = synthetic_bars(300)
    bars.iloc[100, bars.columns.get_loc("Close")] = np.inf
    bars.to_csv(tmp_path / "inf.csv")
    with pytest.raises(DataError, match=r"inf.csv: infinite price at 2020-01-05 04:00"):
        load_bars(tmp_path / "inf.csv")


def test_10_metadata_is_strict_json(tmp_path):
    source = tmp_path / "w.bin"
    source.write_bytes(b"w")
    entry = Registry(tmp_path / "reg").save("m", {"w.bin": source}, {"cost": {"val_loss": float("nan")},
                                                                      "x": [float("inf")]})

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    meta = json.loads((entry.path / "metadata.json").read_text(), parse_constant=refuse)
    assert meta["cost"]["val_loss"] is None and meta["x"] == [None]


@pytest.fixture()
def predictions(trained, tmp_path):
    entries, split, path = trained
    test = split.test
    frames = [pd.DataFrame({"method": m, "close": test["close"], "forecast": test["close"] * f,
                            "p_up": 0.5}, index=test.index) for m, f in (("up", 1.001), ("down", 0.999))]
    file = tmp_path / "predictions.csv"
    pd.concat(frames).rename_axis("timestamp").to_csv(file)
    return file, path


def test_11_backtest_refuses_several_methods_unless_one_is_picked(predictions, tmp_path, capsys):
    file, data = predictions
    code, err = _cli(capsys, "backtest", "--predictions", file, "--data", data, "--out", tmp_path / "bt")
    assert code == 2 and "holds 2 methods (down, up); pick one with --method" in _one_line(err)
    assert not (tmp_path / "bt").exists()
    code, _ = _cli(capsys, "backtest", "--predictions", file, "--data", data, "--out", tmp_path / "up",
                   "--method", "up", "--cost", "spread_pips=2.5", "--cost", "cash=50000")
    metrics = json.loads((tmp_path / "up" / "metrics.json").read_text())
    assert code == 0 and metrics["method"] == "up" and metrics["trades"] >= 1
    assert metrics["costs"]["spread_pips"] == 2.5 and metrics["costs"]["cash"] == 50000
    equity = pd.read_csv(tmp_path / "up" / "equity.csv", index_col=0)
    assert equity.iloc[0, 0] == pytest.approx(50000, rel=1e-3)


def _csv(folder: Path, bars: int) -> Path:
    path = folder / "bars.csv"
    synthetic_bars(bars).to_csv(path)
    return path

