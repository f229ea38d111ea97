"""The shipped base: what it has seen, and the guard against evaluation bars it has seen."""

import pandas as pd
import pytest
from backtesting.test import GOOG

from llmsignal.cli import main
from llmsignal.data import load_bars
from llmsignal.finetune.base import EMBEDDED_DIR, load_base, seen_by_base


@pytest.fixture(scope="module")
def embedded():
    return load_base("embedded")


def test_embedded_base_is_a_small_gpt2_that_never_saw_eurusd(embedded):
    assert type(embedded.model).__name__ == "GPT2LMHeadModel"
    assert 1e6 < sum(p.numel() for p in embedded.model.parameters()) < 1e7
    names = {s["name"] for s in embedded.info["corpus"]}
    assert {"sp500", "goog"} <= names and not any("eur" in n for n in names)
    assert seen_by_base(embedded, load_bars()["close"]) == []


def test_data_the_base_has_seen_is_flagged_whatever_the_file_is_called(embedded):
    renamed = GOOG["Close"].iloc[500:900] * 3.0  # another name, another scale, the same bars
    warnings = seen_by_base(embedded, renamed)
    assert len(warnings) == 1 and "'goog'" in warnings[0] and str(renamed.index[0].date()) in warnings[0]


def test_a_run_on_seen_data_warns_in_the_report(tmp_path, capsys):
    csv = tmp_path / "mystery.csv"
    GOOG.to_csv(csv)
    code = main(["run", "--quick", "--data", str(csv), "--methods", "zero-shot", "--registry", str(tmp_path / "r"),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert "pretrained on series 'goog'" in capsys.readouterr().err
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert page.index("Warning: the base") < page.index("<table")


def test_base_info_lists_the_corpus(capsys):
    assert main(["base-info"]) == 0
    out = capsys.readouterr().out
    assert "held-out loss" in out and "arch.data.sp500" in out and "synthetic_garch_volatility" in out
    assert EMBEDDED_DIR.joinpath("corpus_windows.npz").exists()
    assert isinstance(pd.read_json(EMBEDDED_DIR / "llmsignal_base.json", typ="series")["heldout_loss"], float)
