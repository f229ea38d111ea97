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


def test_the_corpus_bars_have_ranges_that_show_their_volatility():
    """Synthetic bars get an intrabar path whose range holds the open and close and tracks the process's volatility;
    market series bring their own highs and lows; the closes are the ones the shipped base was pretrained on."""
    import numpy as np
    from scipy.stats import spearmanr

    from llmsignal.finetune.bars import range_problem
    from llmsignal.finetune.corpus import bars_fingerprint, bundled_series, synthetic_series

    shipped = {s["name"]: s["fingerprint"] for s in load_base().info["corpus"]}
    for series in synthetic_series(0) + bundled_series():
        assert bars_fingerprint(series.closes) == shipped[series.name]
        if series.high is None:
            assert series.name == "wti"
            continue
        close = series.closes.to_numpy()
        opens = np.r_[close[0], close[:-1]]
        if series.name.startswith("synthetic"):
            assert range_problem(opens, series.high.to_numpy(), series.low.to_numpy(), close) is None
    garch = next(s for s in synthetic_series(0) if s.name == "synthetic_garch_volatility")
    ranges = np.log(garch.high / garch.low).to_numpy()[1:]
    volatility = pd.Series(np.abs(np.diff(np.log(garch.closes.to_numpy())))).rolling(50, center=True).mean()
    assert spearmanr(ranges, volatility, nan_policy="omit").statistic > 0.5
