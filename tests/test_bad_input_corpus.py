"""Issue #29: every command over a corpus of malformed inputs.

Each case writes one malformed input (a CSV, a flag, a predictions file, a registry reference, an export, a
config, a sweep config, a run folder, a base folder) into its own folder and returns the argv that hands it to
llmsignal. For every case the command must: exit with status 2; print exactly one line on stderr,
``llmsignal: error: ...`` (or argparse's usage, then its one ``llmsignal CMD: error: ...`` line) naming the file
or flag and the problem; print no traceback; leave the registry (one real tiny entry) byte for byte as it was;
leave --out as it was (no partial or temporary file), and write nothing anywhere else in the case's folder.

The cases are data: ``CASES`` is the corpus, ``test_a_malformed_input_is_one_line_and_changes_nothing`` runs it.
No case may start the expensive work: training, a sweep's trials, pretraining and serving are replaced by a
function that fails the test, so a check that goes missing shows up as a red case, never as a training.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmsignal.cli import main
from llmsignal.models.registry import Registry
from tests.conftest import synthetic_bars, tiny_entries
from tests.test_bad_input_configs import BOMB
from tests.test_bad_input_entries import _edit_json, _rehash

BARS = 500
ENTRY = "t-lora"


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    """A registry with one real tiny entry, and the bars it was trained on."""
    folder = tmp_path_factory.mktemp("corpus")
    tiny_entries(folder, tiny_base, ("lora",), bars=BARS, prefix="t")
    return folder / "reg", folder / "bars.csv"


@dataclass
class Ctx:
    """One case's folder: good bars, a copy of the registry, the --out it must not touch, the tiny base."""

    tmp: Path
    data: Path
    reg: Path
    out: Path
    base: str

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def bars(self, n: int = BARS) -> pd.DataFrame:
        return synthetic_bars(n)

    def bars_csv(self, name: str, change: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None,
                 n: int = BARS) -> Path:
        frame = self.bars(n)
        if change is not None:
            changed = change(frame)
            frame = frame if changed is None else changed
        frame.to_csv(self.tmp / name)
        return self.tmp / name

    def predictions(self, name: str = "predictions.csv", change: Callable[[pd.DataFrame], object] | None = None,
                    methods: tuple[str, ...] = ("lora",)) -> Path:
        """A predictions file of the last 100 bars of ``data``, as `predict` writes it, then ``change``d."""
        test = pd.read_csv(self.data, index_col=0, parse_dates=[0]).iloc[-100:]
        frames = [pd.DataFrame({"method": m, "close": test["Close"], "forecast": test["Close"] * (1 + 1e-4 * i),
                                "p_up": 0.55, "sigma": 1e-3}, index=test.index) for i, m in enumerate(methods)]
        frame = pd.concat(frames).rename_axis("timestamp")
        if change is not None:
            result = change(frame)
            frame = result if isinstance(result, pd.DataFrame) else frame
        frame.to_csv(self.tmp / name)
        return self.tmp / name

    def stamp(self, row: int) -> str:
        """The timestamp of row ``row`` of ``predictions()``."""
        return str(pd.read_csv(self.data, index_col=0, parse_dates=[0]).index[-100 + row])

    def export(self, name: str = "export") -> Path:
        Registry(self.reg).export(ENTRY, self.tmp / name)
        return self.tmp / name

    def base_copy(self) -> Path:
        shutil.copytree(self.base, self.tmp / "base")
        return self.tmp / "base"

    # the commands, with everything that keeps a case small: the tiny base, --quick, float32, one method
    def train(self, *flags) -> list:
        return ["train", "--method", "lora", "--quick", "--base", self.base, "--registry", self.reg,
                "--precision", "float32", *flags]

    def run(self, *flags) -> list:
        return ["run", "--quick", "--methods", "lora", "--base", self.base, "--registry", self.reg, "--out", self.out,
                "--precision", "float32", *flags]

    def predict(self, *flags, entry: str = ENTRY) -> list:
        return ["predict", "--entry", entry, "--registry", self.reg, "--out", self.out / "forecasts.csv", *flags]

    def backtest(self, predictions: Path, *flags, data: Path | None = None) -> list:
        return ["backtest", "--predictions", predictions, "--data", data or self.data, "--out", self.out, *flags]

    def sweep(self, config: Path, *flags) -> list:
        return ["sweep", config, "--out", self.out, "--registry", self.reg, *flags]


@dataclass
class Case:
    argv: list
    says: tuple[str, ...]  # each must be in the error line: the file or flag, and the problem


CASES: list = []


def case(case_id: str, open_fault: str | None = None):
    """Add a case to the corpus; ``open_fault`` names a fault not fixed yet (strict xfail: red once it is fixed)."""
    def register(build: Callable[[Ctx], Case]):
        marks = [pytest.mark.xfail(strict=True, reason=open_fault)] if open_fault else []
        CASES.append(pytest.param(build, id=case_id, marks=marks))
        return build
    return register


# --- bad CSVs of bars ---------------------------------------------------------------------------------------------

@case("csv-empty")
def _(c: Ctx) -> Case:
    path = c.write("empty.csv", "")
    return Case(c.train("--data", path), (str(path),))


@case("csv-header-only")
def _(c: Ctx) -> Case:
    path = c.write("header.csv", "Date,Open,High,Low,Close,Volume\n")
    return Case(c.run("--data", path), (str(path), "no bars"))


@case("csv-no-close-column")
def _(c: Ctx) -> Case:
    path = c.bars_csv("noclose.csv", lambda f: f.drop(columns="Close"))
    return Case(c.train("--data", path), (str(path), "missing column(s) close"))


@case("run-ohlc-close-only-csv")
def _(c: Ctx) -> Case:
    path = c.bars_csv("closes.csv", lambda f: f[["Close"]])
    return Case(c.run("--data", path, "--inputs", "ohlc"), (str(path), "missing column(s) open, high, low"))


@case("run-ohlc-bars-without-ranges")
def _(c: Ctx) -> Case:
    path = c.bars_csv("flat.csv", lambda f: f.assign(Open=f["Close"], High=f["Close"], Low=f["Close"]))
    return Case(c.run("--data", path, "--inputs", "close,ohlc"), (str(path), "no ranges", "--inputs close"))


@case("train-ohlc-low-above-close")
def _(c: Ctx) -> Case:
    def broken(frame: pd.DataFrame) -> None:
        frame.iloc[30, frame.columns.get_loc("Low")] = frame["Close"].iloc[30] * 1.002
    path = c.bars_csv("broken.csv", broken)
    return Case(c.train("--data", path, "--inputs", "ohlc"), (str(path), "has its low", "above its"))


@case("run-inputs-unknown")
def _(c: Ctx) -> Case:
    return Case(c.run("--inputs", "close,hlc"), ("--inputs", "hlc is not one of close, ohlc"))


@case("train-inputs-two-kinds")
def _(c: Ctx) -> Case:
    return Case(c.train("--inputs", "close,ohlc"), ("--inputs", "an entry reads one kind"))


@case("predict-inputs-not-the-entrys")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, "--inputs", "ohlc"), (ENTRY, "reads close inputs, not ohlc"))


@case("csv-no-time-column")
def _(c: Ctx) -> Case:
    path = c.tmp / "notime.csv"
    c.bars().to_csv(path, index=False)
    return Case(c.train("--data", path), (str(path), "no Date/Time column"))


@case("csv-text-price")
def _(c: Ctx) -> Case:
    path = c.bars_csv("text.csv", lambda f: f.astype({"Close": object}).assign(
        Close=lambda g: g["Close"].where(np.arange(len(g)) != 40, "one point one")))
    return Case(c.predict("--data", path), (str(path), "non-numeric price"))


@case("csv-nan-price")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.iloc[450, frame.columns.get_loc("Close")] = np.nan
    frame.to_csv(c.tmp / "nan.csv")
    return Case(c.backtest(c.predictions(), data=c.tmp / "nan.csv"), (str(c.tmp / "nan.csv"), "NaN"))


@case("csv-negative-price")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.iloc[100, frame.columns.get_loc("Low")] = -1.0
    frame.to_csv(c.tmp / "neg.csv")
    return Case(c.train("--data", c.tmp / "neg.csv"), (str(c.tmp / "neg.csv"), "non-positive price"))


@case("csv-zero-price")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.iloc[100, frame.columns.get_loc("Open")] = 0.0
    frame.to_csv(c.tmp / "zero.csv")
    return Case(c.predict("--data", c.tmp / "zero.csv"), (str(c.tmp / "zero.csv"), "non-positive price"))


@case("csv-inf-price")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.iloc[100, frame.columns.get_loc("Close")] = np.inf
    frame.to_csv(c.tmp / "inf.csv")
    return Case(c.run("--data", c.tmp / "inf.csv"), (str(c.tmp / "inf.csv"), "infinite price"))


@case("csv-duplicate-timestamps")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.index = frame.index.where(np.arange(len(frame)) != 101, frame.index[100])
    frame.to_csv(c.tmp / "dup.csv")
    return Case(c.train("--data", c.tmp / "dup.csv"), (str(c.tmp / "dup.csv"), "duplicate timestamp"))


@case("csv-unsorted-timestamps")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame = pd.concat([frame.iloc[250:], frame.iloc[:250]])
    frame.to_csv(c.tmp / "unsorted.csv")
    return Case(c.predict("--data", c.tmp / "unsorted.csv"), (str(c.tmp / "unsorted.csv"), "not sorted"))


@case("csv-unreadable-timestamp")
def _(c: Ctx) -> Case:
    frame = c.bars()
    frame.index = frame.index.astype(str).where(np.arange(len(frame)) != 7, "yesterday-ish")
    frame.to_csv(c.tmp / "stamp.csv")
    return Case(c.train("--data", c.tmp / "stamp.csv"), (str(c.tmp / "stamp.csv"), "unreadable timestamp"))


@case("csv-too-few-bars")
def _(c: Ctx) -> Case:
    path = c.bars_csv("few.csv", n=50)
    return Case(c.train("--data", path), (str(path), "only 50 bars"))


@case("csv-too-few-bars-for-the-window")
def _(c: Ctx) -> Case:
    path = c.bars_csv("short.csv", n=210)
    return Case(c.run("--data", path, "--test", "0.7"), (str(path), "too few"))


@case("mt5-export-without-date")
def _(c: Ctx) -> Case:
    rows = "".join(f"00:{i % 60:02d}:00\t1.1\t1.2\t1.0\t1.1\t10\t0\t2\n" for i in range(300))
    path = c.write("mt5.csv", "<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n" + rows)
    return Case(c.train("--data", path), (str(path), "<DATE>"))


@case("mt5-export-header-only")
def _(c: Ctx) -> Case:
    path = c.write("mt5-empty.csv", "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
                                    .encode("utf-16"))
    return Case(c.train("--data", path), (str(path), "no bars"))


@case("csv-binary-bytes")
def _(c: Ctx) -> Case:
    path = c.write("binary.csv", bytes(range(256)) * 64)
    return Case(c.train("--data", path), (str(path),))


@case("csv-utf16-without-bom")
def _(c: Ctx) -> Case:
    text = c.bars().to_csv()
    path = c.write("utf16.csv", text.encode("utf-16-le"))
    return Case(c.train("--data", path), (str(path),))


@case("csv-missing-file")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.tmp / "nowhere.csv"), (str(c.tmp / "nowhere.csv"), "no such file"))


@case("csv-is-a-folder")
def _(c: Ctx) -> Case:
    (c.tmp / "folder.csv").mkdir()
    return Case(c.predict("--data", c.tmp / "folder.csv"), (str(c.tmp / "folder.csv"),))


STRATEGY = ("from llmsignal.strategies import LLMSignalStrategy\n\n\nclass {name}(LLMSignalStrategy):\n{init}"
            "    def decide(self, signal):\n        return 0.0\n")


# --- bad flags ----------------------------------------------------------------------------------------------------

@case("train-seed-negative")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--seed", "-1"), ("--seed", "must be a whole number"))


@case("run-seed-abc")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--seed", "abc"), ("--seed", "'abc'"))


@case("train-steps-0")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--steps", "0"), ("--steps", "must be at least 1, got 0"))


@case("run-steps-abc")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--steps", "abc"), ("--steps", "must be a whole number"))


@case("run-test-1.5")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--test", "1.5"), ("test (1.5)",))


@case("train-val-negative")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--val", "-0.1"), ("validation (-0.1)",))


@case("run-methods-nope")
def _(c: Ctx) -> Case:
    argv = c.run("--data", c.data)
    argv[argv.index("lora")] = "nope"
    return Case(argv, ("nope",))


@case("run-methods-empty")
def _(c: Ctx) -> Case:
    argv = c.run("--data", c.data)
    argv[argv.index("lora")] = " , "
    return Case(argv, ("--methods", "names no method"))


@case("train-method-nope")
def _(c: Ctx) -> Case:
    argv = c.train("--data", c.data)
    argv[argv.index("lora")] = "nope"
    return Case(argv, ("'nope'",))


@case("run-param-not-a-number")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--param", "lora.r=abc"), ("r", "'abc'"))


@case("train-param-unknown-method")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--param", "nobody.x=1"), ("x",))


@case("run-param-unknown-method")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--param", "nobody.x=1"), ("nobody",))


@case("run-param-no-equals")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--param", "lora.r"), ("'lora.r'", "name=value"))


@case("run-strategy-nosuch")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--strategy", "nosuch"), ("nosuch",))


@case("run-strategy-file-without-the-class")
def _(c: Ctx) -> Case:
    path = c.write("mine.py", STRATEGY.format(name="Other", init=""))
    return Case(c.run("--data", c.data, "--strategy", f"{path}:Missing"), ("mine.py", "Missing"))


@case("run-strategy-missing-file")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--strategy", f"{c.tmp / 'gone.py'}:Mine"), ("gone.py",))


@case("run-strategy-init-raises")
def _(c: Ctx) -> Case:
    path = c.write("boom.py", STRATEGY.format(
        name="Boom", init="    def __init__(self, *args, **kwargs):\n        raise RuntimeError('kaboom')\n\n"))
    return Case(c.run("--data", c.data, "--strategy", f"{path}:Boom"), ("Boom", "kaboom"))


@case("run-strategy-param-not-a-number")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--strategy-param", "threshold_bps=abc"), ("threshold_bps", "'abc'"))


@case("run-strategy-param-unknown")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--strategy-param", "nosuch_knob=1"), ("nosuch_knob",))


@case("run-cost-negative-spread")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--cost", "spread_pips=-1"), ("spread_pips", "out of range"))


@case("run-cost-unknown")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--cost", "nope=1"), ("unknown cost 'nope'",))


@case("run-day-end-25")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--day-end", "25:00 America/New_York"), ("--day-end", "not a time of day"))


@case("run-day-end-unknown-zone")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--day-end", "17:00 Mars/Olympus"), ("--day-end", "Mars/Olympus"))


@case("run-forecasts-per-pass-0")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--forecasts-per-pass", "0"), ("forecasts per pass", "not 0"))


@case("predict-forecasts-per-pass-0")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, "--forecasts-per-pass", "0"), ("forecasts per pass", "not 0"))


@case("run-precision-half")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data) + ["--precision", "half"], ("--precision", "'half'"))


@case("train-budget-fast")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--budget", "fast"), ("--budget", "'fast'"))


@case("run-track-mlflow-proc")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--track", "mlflow:/proc/x"), ("--track", "/proc/x"))


@case("run-track-unknown-sink")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--track", "wandb"), ("--track", "'wandb'"))


@case("run-walk-forward-too-many-folds")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--walk-forward", "1000"), (str(c.data), "1000 folds"))


@case("run-walk-forward-negative")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--walk-forward", "-1"), ("--walk-forward",))


@case("run-out-is-a-file")
def _(c: Ctx) -> Case:
    c.out = c.write("out-file", "mine")
    return Case(c.run("--data", c.data), ("--out", "is a file"))


@case("train-name-escapes")
def _(c: Ctx) -> Case:
    return Case(c.train("--data", c.data, "--name", "../x"), ("invalid entry name '../x'",))


@case("serve-public-without-api-key")
def _(c: Ctx) -> Case:
    return Case(["serve", "--entry", ENTRY, "--registry", c.reg, "--host", "0.0.0.0"], ("0.0.0.0", "--api-key"))


@case("pretrain-steps-0")
def _(c: Ctx) -> Case:
    return Case(["pretrain", "--steps", "0", "--out", c.out], ("--steps", "must be at least 1"))


@case("sweep-workers-0")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\n")
    return Case(c.sweep(config, "--workers", "0"), ("--workers", "must be at least 1"))


@case("run-steps-negative")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--steps", "-5"), ("--steps", "must be at least 1, got -5"))


@case("run-param-lora-r-negative")
def _(c: Ctx) -> Case:
    return Case(c.run("--data", c.data, "--param", "lora.r=-4"), ("method 'lora': r='-4' must be positive",))


@case("run-strategy-decide-raises")
def _(c: Ctx) -> Case:
    path = c.write("mine.py", STRATEGY.format(name="Mine", init="").replace("return 0.0", "raise RuntimeError('boom')"))
    return Case(c.run("--data", c.data, "--strategy", f"{path}:Mine"), ("mine.py", "decide raised RuntimeError"))


@case("run-strategy-decide-returns-text")
def _(c: Ctx) -> Case:
    path = c.write("mine.py", STRATEGY.format(name="Mine", init="").replace("return 0.0", "return 'long'"))
    return Case(c.run("--data", c.data, "--strategy", f"{path}:Mine"), ("mine.py", "decide returned 'long'"))


# --- predictions files for backtest -------------------------------------------------------------------------------

@case("predictions-missing-file")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.tmp / "gone.csv"), (str(c.tmp / "gone.csv"), "no such file"))


@case("predictions-empty-file")
def _(c: Ctx) -> Case:
    path = c.write("empty.csv", "")
    return Case(c.backtest(path), (str(path), "not a readable CSV"))


@case("predictions-header-only")
def _(c: Ctx) -> Case:
    path = c.write("header.csv", "timestamp,method,close,forecast,p_up\n")
    return Case(c.backtest(path), (str(path),))


@case("predictions-binary")
def _(c: Ctx) -> Case:
    path = c.write("binary.csv", bytes(range(256)) * 64)
    return Case(c.backtest(path), (str(path),))


@case("predictions-missing-columns")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.drop(columns=["forecast", "p_up"]))
    return Case(c.backtest(path), (str(path), "missing column(s) forecast, p_up"))


@case("predictions-text-forecast")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.astype({"forecast": object}).assign(
        forecast=lambda g: g["forecast"].where(np.arange(len(g)) != 30, "up a bit")))
    return Case(c.backtest(path), (str(path), f"column forecast holds 'up a bit' at {c.stamp(30)}"))


@case("predictions-text-close")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(close="unknown"))
    return Case(c.backtest(path), (str(path), f"column close holds 'unknown' at {c.stamp(0)}"))


@case("predictions-nan-forecast")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(forecast=f["forecast"].where(np.arange(len(f)) != 30)))
    return Case(c.backtest(path), (str(path), f"column forecast holds nan at {c.stamp(30)}", "finite"))


@case("predictions-inf-forecast")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(forecast=f["forecast"].where(np.arange(len(f)) != 30, np.inf)))
    return Case(c.backtest(path), (str(path), f"column forecast holds inf at {c.stamp(30)}", "finite"))


@case("predictions-p-up-7")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(p_up=f["p_up"].where(np.arange(len(f)) != 12, 7.0)))
    return Case(c.backtest(path), (str(path), f"column p_up holds 7.0 at {c.stamp(12)}", "from 0 to 1"))


@case("predictions-p-up-negative")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(p_up=-0.1))
    return Case(c.backtest(path), (str(path), f"column p_up holds -0.1 at {c.stamp(0)}", "from 0 to 1"))


@case("predictions-nan-sigma")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.assign(sigma=np.nan))
    return Case(c.backtest(path), (str(path), f"column sigma holds nan at {c.stamp(0)}"))


@case("predictions-several-methods")
def _(c: Ctx) -> Case:
    path = c.predictions(methods=("down", "up"))
    return Case(c.backtest(path), (str(path), "pick one with --method"))


@case("predictions-unknown-method")
def _(c: Ctx) -> Case:
    path = c.predictions(methods=("down", "up"))
    return Case(c.backtest(path, "--method", "sideways"), (str(path), "no rows of method 'sideways'"))


@case("predictions-unsorted")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.iloc[::-1])
    return Case(c.backtest(path), (str(path), "unsorted or repeated"))


@case("predictions-repeated-timestamps")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: pd.concat([f, f.iloc[-3:]]).sort_index())
    return Case(c.backtest(path), (str(path), "unsorted or repeated"))


@case("predictions-unreadable-timestamps")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.set_axis([f"bar {i}" for i in range(len(f))]).rename_axis("timestamp"))
    return Case(c.backtest(path), (str(path), "unreadable timestamp 'bar 0'"))


@case("predictions-no-overlap-with-bars")
def _(c: Ctx) -> Case:
    path = c.predictions(change=lambda f: f.set_axis(f.index + pd.Timedelta(days=3650)).rename_axis("timestamp"))
    return Case(c.backtest(path), (str(path), "in common"))


@case("backtest-strategy-twice")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--strategy", "ThresholdStrategy", "--strategy", "ProbabilityStrategy"),
                ("--strategy given 2 times",))


@case("backtest-strategy-nosuch")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--strategy", "nosuch"), ("nosuch",))


@case("backtest-strategy-param-not-a-number")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--strategy-param", "threshold_bps=abc"), ("threshold_bps", "'abc'"))


@case("backtest-cost-negative-spread")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--cost", "spread_pips=-1"), ("spread_pips", "out of range"))


@case("backtest-cost-unknown")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--cost", "nope=1"), ("unknown cost 'nope'",))


@case("backtest-cost-no-equals")
def _(c: Ctx) -> Case:
    return Case(c.backtest(c.predictions(), "--cost", "spread_pips"), ("--cost 'spread_pips'", "name=value"))


# --- registry references, exports and imports ---------------------------------------------------------------------

@case("show-missing-entry")
def _(c: Ctx) -> Case:
    return Case(["registry", "show", "nobody", "--registry", c.reg], ("nobody",))


@case("predict-missing-entry")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, entry="nobody"), ("nobody",))


@case("predict-missing-version")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, entry=f"{ENTRY}@99"), (f"'{ENTRY}'", "no version '99'"))


@case("show-version-abc")
def _(c: Ctx) -> Case:
    return Case(["registry", "show", f"{ENTRY}@abc", "--registry", c.reg], ("abc", "digits 0-9"))


@case("rm-version-arabic-indic-one")
def _(c: Ctx) -> Case:
    return Case(["registry", "rm", f"{ENTRY}@١", "--registry", c.reg], ("١", "digits 0-9"))


@case("predict-version-superscript-two")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, entry=f"{ENTRY}@²"), ("²", "digits 0-9"))


@case("rm-parent-folder")
def _(c: Ctx) -> Case:
    c.write("x/1/metadata.json", "{}")
    return Case(["registry", "rm", "../x", "--registry", c.reg], ("invalid entry name '../x'",))


@case("show-damaged-version")
def _(c: Ctx) -> Case:
    shutil.copytree(c.reg / ENTRY / "1", c.reg / ENTRY / "2")
    (c.reg / ENTRY / "2" / "metadata.json").write_bytes(b"[]")
    return Case(["registry", "show", f"{ENTRY}@2", "--registry", c.reg], (f"{ENTRY}@2 has unreadable metadata",))


@case("predict-version-cut-short")
def _(c: Ctx) -> Case:
    (c.reg / ENTRY / "2").mkdir()
    return Case(c.predict("--data", c.data, entry=f"{ENTRY}@2"), (f"{ENTRY}@2 is damaged",))


@case("show-name-with-nul")
def _(c: Ctx) -> Case:
    return Case(["registry", "show", "a\x00b", "--registry", c.reg], ("invalid entry name",))


@case("export-name-too-long")
def _(c: Ctx) -> Case:
    return Case(["registry", "export", "x" * 300, c.tmp / "e", "--registry", c.reg], ("invalid entry name",))


@case("export-missing-entry")
def _(c: Ctx) -> Case:
    return Case(["registry", "export", "nobody", c.tmp / "e", "--registry", c.reg], ("nobody",))


@case("export-to-an-existing-file")
def _(c: Ctx) -> Case:
    target = c.write("taken.txt", "mine")
    return Case(["registry", "export", ENTRY, target, "--registry", c.reg], (str(target),))


@case("export-to-a-folder-with-files")
def _(c: Ctx) -> Case:
    c.write("full/notes.txt", "mine")
    return Case(["registry", "export", ENTRY, c.tmp / "full", "--registry", c.reg], (str(c.tmp / "full"),))


@case("export-to-a-symlinked-folder")
def _(c: Ctx) -> Case:
    (c.tmp / "real").mkdir()
    (c.tmp / "link").symlink_to(c.tmp / "real")
    return Case(["registry", "export", ENTRY, c.tmp / "link", "--registry", c.reg], ("symbolic link",))


@case("import-missing-folder")
def _(c: Ctx) -> Case:
    return Case(["registry", "import", c.tmp / "gone", "--registry", c.reg], (str(c.tmp / "gone"),))


@case("import-bad-metadata")
def _(c: Ctx) -> Case:
    export = c.export()
    _edit_json(export / "metadata.json", lambda m: m.update(method="dora"))
    return Case(["registry", "import", export, "--registry", c.reg], ("unknown method 'dora'",))


@case("import-metadata-not-json")
def _(c: Ctx) -> Case:
    export = c.export()
    (export / "metadata.json").write_bytes(b"\xff\xfe{not json")
    return Case(["registry", "import", export, "--registry", c.reg], ("metadata",))


@case("import-symlink")
def _(c: Ctx) -> Case:
    export = c.export()
    secret = c.write("secret.bin", (export / "adapter_model.safetensors").read_bytes())
    (export / "adapter_model.safetensors").unlink()
    (export / "adapter_model.safetensors").symlink_to(secret)
    return Case(["registry", "import", export, "--registry", c.reg], ("adapter_model.safetensors is a symbolic link",))


@case("import-oversized-adapter-r")
def _(c: Ctx) -> Case:
    export = c.export()
    _edit_json(export / "adapter_config.json", lambda a: a.update(r=3_000_000))
    _rehash(export)
    return Case(["registry", "import", export, "--registry", c.reg], ("adapter_config.json: r is 3000000",))


@case("import-tampered-file")
def _(c: Ctx) -> Case:
    export = c.export()
    with open(export / "adapter_model.safetensors", "ab") as file:
        file.write(b"\0")
    return Case(["registry", "import", export, "--registry", c.reg], ("adapter_model.safetensors",))


@case("import-bad-name")
def _(c: Ctx) -> Case:
    return Case(["registry", "import", c.export(), "--name", "../up", "--registry", c.reg],
                ("invalid entry name '../up'",))


@case("serve-missing-entry")
def _(c: Ctx) -> Case:
    return Case(["serve", "--entry", "nobody", "--registry", c.reg], ("nobody",))


# --- run config files ---------------------------------------------------------------------------------------------

@case("config-unknown-key")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "methods: [lora]\nlearning_speed: 11\n")
    return Case(c.run("--config", config), (str(config), "learning_speed"))


@case("config-bad-value")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "steps: many\n")
    return Case(c.run("--config", config), (str(config), "steps"))


@case("config-bad-seed")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "seed: -1\n")
    return Case(c.run("--config", config), (str(config), "seed"))


@case("config-alias-bomb")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", f"{BOMB}methods: *a9\n")
    return Case(c.run("--config", config), (str(config), "aliases expand"))


@case("config-invalid-yaml")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "methods: [lora\nsteps: {\n")
    return Case(c.run("--config", config), (str(config),))


@case("config-not-a-mapping")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "- lora\n- adapter\n")
    return Case(c.run("--config", config), (str(config),))


@case("config-missing-file")
def _(c: Ctx) -> Case:
    return Case(c.run("--config", c.tmp / "gone.yaml"), (str(c.tmp / "gone.yaml"),))


@case("config-utf16-without-bom")
def _(c: Ctx) -> Case:
    config = c.write("run.yaml", "methods: [lora]\n".encode("utf-16-le"))
    return Case(c.run("--config", config), (str(config), "UTF-8"))


# --- sweep configs ------------------------------------------------------------------------------------------------

@case("sweep-steps-negative")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\nbudget: {steps: -5, quick: true}\n")
    return Case(c.sweep(config), ("budget.steps", "-5"))


@case("sweep-unknown-method")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora, nope]\n")
    return Case(c.sweep(config), ("nope",))


@case("sweep-empty-methods")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: []\n")
    return Case(c.sweep(config), ("no methods",))


@case("sweep-unknown-key")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\nepochs: 3\n")
    return Case(c.sweep(config), ("epochs",))


@case("sweep-invalid-yaml")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora\n")
    return Case(c.sweep(config), (str(config),))


@case("sweep-invalid-json")
def _(c: Ctx) -> Case:
    config = c.write("grid.json", '{"methods": ["lora"],')
    return Case(c.sweep(config), (str(config), "not valid JSON"))


@case("sweep-alias-bomb")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", f"{BOMB}methods: [lora]\nparams: {{lora: {{r: *a9}}}}\n")
    return Case(c.sweep(config), (str(config), "aliases expand"))


@case("sweep-missing-config")
def _(c: Ctx) -> Case:
    return Case(c.sweep(c.tmp / "gone.yaml"), (str(c.tmp / "gone.yaml"),))


@case("sweep-utf16-without-bom")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\n".encode("utf-16-le"))
    return Case(c.sweep(config), (str(config), "UTF-8"))


@case("sweep-missing-data")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\ndata: [gone.csv]\n")
    return Case(c.sweep(config), ("gone.csv",))


@case("sweep-track-mlflow-proc")
def _(c: Ctx) -> Case:
    config = c.write("grid.yaml", "methods: [lora]\n")
    return Case(c.sweep(config, "--track", "mlflow:/proc/x"), ("--track", "/proc/x"))


# --- compare, predict dates, base folders -------------------------------------------------------------------------

@case("compare-folder-not-a-run")
def _(c: Ctx) -> Case:
    c.write("notarun/notes.txt", "mine")
    return Case(["compare", c.tmp / "notarun", "--out", c.out], (str(c.tmp / "notarun"),))


@case("compare-missing-folder")
def _(c: Ctx) -> Case:
    return Case(["compare", c.tmp / "gone", "--out", c.out], (str(c.tmp / "gone"),))


@case("compare-damaged-run")
def _(c: Ctx) -> Case:
    c.write("damaged/comparison.csv", b"\x00\x01garbage,,\n\xff")
    return Case(["compare", c.tmp / "damaged", "--out", c.out], (str(c.tmp / "damaged"),))


@case("predict-start-not-a-date")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, "--start", "not-a-date"), ("--start", "is not a date"))


@case("predict-start-after-the-bars")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.data, "--start", "2100-01-01"), (str(c.data), "no bars on or after"))


@case("predict-missing-data-file")
def _(c: Ctx) -> Case:
    return Case(c.predict("--data", c.tmp / "gone.csv"), (str(c.tmp / "gone.csv"), "no such file"))


@case("predict-out-under-a-file")
def _(c: Ctx) -> Case:
    blocker = c.write("blocker", "mine")
    return Case(["predict", "--entry", ENTRY, "--registry", c.reg, "--data", c.data, "--out", blocker / "f.csv"],
                ("--out", "is a file"))


@case("train-base-missing-folder")
def _(c: Ctx) -> Case:
    argv = c.train("--data", c.data)
    argv[argv.index(c.base)] = c.tmp / "nobase"
    return Case(argv, (str(c.tmp / "nobase"),))


@case("base-info-missing-folder")
def _(c: Ctx) -> Case:
    return Case(["base-info", "--base", c.tmp / "nobase"], (str(c.tmp / "nobase"),))


@case("methods-missing-base")
def _(c: Ctx) -> Case:
    return Case(["methods", "--base", c.tmp / "nobase"], (str(c.tmp / "nobase"),))


@case("run-base-n-layer-200")
def _(c: Ctx) -> Case:
    base = c.base_copy()
    _edit_json(base / "config.json", lambda cfg: cfg.update(n_layer=200))
    argv = c.run("--data", c.data)
    argv[argv.index(c.base)] = base
    return Case(argv, (str(base / "config.json"), "n_layer 200"))


@case("base-info-n-layer-200")
def _(c: Ctx) -> Case:
    base = c.base_copy()
    _edit_json(base / "config.json", lambda cfg: cfg.update(n_layer=200))
    return Case(["base-info", "--base", base], (str(base / "config.json"), "n_layer 200"))


@case("base-info-malformed-record")
def _(c: Ctx) -> Case:
    base = c.base_copy()
    (base / "llmsignal_base.json").write_text("{")
    return Case(["base-info", "--base", base], ("llmsignal_base.json", "not valid JSON"))


@case("base-info-config-not-json")
def _(c: Ctx) -> Case:
    base = c.base_copy()
    (base / "config.json").write_text("{ n_layer: 2")
    return Case(["base-info", "--base", base], ("config.json",))


# --- the runner ---------------------------------------------------------------------------------------------------

def tree_hash(folder: Path) -> str | None:
    """Every file's path and bytes (and every folder's path and link's target), sorted; None when absent."""
    if not folder.exists() and not folder.is_symlink():
        return None
    if folder.is_file():
        return hashlib.sha256(folder.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:  # Python's bytecode of an imported strategy file
            continue
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_symlink():
            digest.update(b"->" + str(path.readlink()).encode())
        elif path.is_file():
            digest.update(b"=" + hashlib.sha256(path.read_bytes()).digest())
        else:
            digest.update(b"/")
    return digest.hexdigest()


# what Python does not show a user by default; and the libraries' FutureWarnings, which every good run shows too
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning, FutureWarning)
ARGPARSE_LINE = re.compile(r"^llmsignal( [\w-]+)*: error: ")


def the_error_line(err: str) -> str:
    """The one error line: ``llmsignal: error: ...``, or argparse's usage lines then ``llmsignal CMD: error: ...``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage: "):  # argparse: the usage (wrapped lines indented), then one error line
        usage = 1
        while usage < len(lines) and lines[usage].startswith(" "):
            usage += 1
        lines = lines[usage:]
        assert len(lines) == 1 and ARGPARSE_LINE.match(lines[0]), err[-1500:]
        return lines[0]
    assert len(lines) == 1 and lines[0].startswith("llmsignal: error: "), err[-1500:]
    return lines[0]


def assert_whole(folder: Path) -> None:
    """Every file under ``folder`` reads whole: no temporary leftovers; JSON, CSV and HTML files complete."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        assert not path.name.endswith(".tmp"), f"a temporary file was left: {path}"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".html":
            assert path.read_text().rstrip().endswith("</html>"), f"cut short: {path}"


@pytest.fixture()
def no_expensive_work(monkeypatch, trained):
    """Training, a sweep's trials, pretraining and serving fail the case instead of starting."""

    def refuse(*args, **kwargs):
        raise AssertionError("the case started expensive work: an input check is missing")

    import llmsignal.finetune.pretrain
    import llmsignal.models.entries
    import llmsignal.models.server
    import llmsignal.run
    import llmsignal.sweep

    for module, name in ((llmsignal.models.entries, "train_entry"), (llmsignal.run, "train_entry"),
                         (llmsignal.sweep, "run_sweep"), (llmsignal.finetune.pretrain, "pretrain"),
                         (llmsignal.models.server, "serve")):
        monkeypatch.setattr(module, name, refuse)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 70
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize("build", CASES)
def test_a_malformed_input_is_one_line_and_changes_nothing(build, trained, tiny_base, tmp_path, capsys,
                                                           no_expensive_work):
    registry, data = trained
    ctx = Ctx(tmp=tmp_path / "in", data=tmp_path / "in" / "bars.csv", reg=tmp_path / "reg", out=tmp_path / "out",
              base=tiny_base)
    ctx.tmp.mkdir()
    shutil.copy(data, ctx.data)
    shutil.copytree(registry, ctx.reg)
    built = build(ctx)
    before = {"registry": tree_hash(ctx.reg), "out": tree_hash(ctx.out), "everything": tree_hash(tmp_path)}
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as shown:  # a user would see each as lines on stderr
        warnings.simplefilter("default")
        try:
            code = main([str(a) for a in built.argv])
        except SystemExit as stop:  # argparse, and Checked flags, refuse while parsing
            code = stop.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    seen = [f"{w.category.__name__}: {w.message}" for w in shown if not issubclass(w.category, HIDDEN_WARNINGS)]
    assert not seen, f"warnings besides the error line: {seen}"
    line = the_error_line(err)
    assert code == 2, (code, line)
    for said in built.says:
        assert said in line, f"{said!r} not in {line!r}"
    assert tree_hash(ctx.reg) == before["registry"], "the registry changed"
    assert_whole(ctx.out)
    assert tree_hash(ctx.out) == before["out"], f"--out changed: {sorted(map(str, ctx.out.rglob('*')))}"
    assert tree_hash(tmp_path) == before["everything"], "a file was written beside the inputs"
