"""The comparison page, opened in a real browser (Debian's Chromium through playwright; nothing downloaded)."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from llmsignal.backtests.report import recommendation
from llmsignal.cli import main
from llmsignal.compare import compare
from tests.conftest import synthetic_bars

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_folder(tiny_base, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("page")
    synthetic_bars(500).to_csv(folder / "bars.csv")
    code = main(["-q", "run", "--quick", "--data", str(folder / "bars.csv"), "--base", tiny_base, "--methods",
                 "full,lora,adapter,scratch", "--strategy-param", "threshold_bps=0.05", "--registry",
                 str(folder / "reg"), "--out", str(folder / "out")])
    assert code == 0
    return folder / "out"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.resolve().as_uri())
    return page, errors


def test_the_page_answers_first_fits_1366_pixels_and_sorts(run_folder, browser):
    page, errors = _open(browser, run_folder / "comparison.html")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    table = pd.read_csv(run_folder / "comparison.csv")
    headline = page.inner_text("#answer")
    named = re.match(r"Use ([\w-]+):", headline)
    assert (named and named.group(1) in set(table["method"])) or headline.startswith("None beats the baselines")
    before = _column(page, 0)
    page.click("#summary th:nth-child(4)")  # trades
    trades = [int(text.replace(",", "")) for text in _column(page, 3)]
    assert trades == sorted(trades) and _column(page, 0) != before
    for href in page.eval_on_selector_all("a[href^='tearsheets/']", "links => links.map(a => a.getAttribute('href'))"):
        assert (run_folder / href).is_file(), href
    assert errors == []


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all("#summary tbody tr", f"rows => rows.map(r => r.cells[{index}].innerText)")


def test_the_page_shows_the_forecast_distributions(run_folder, browser):
    page, errors = _open(browser, run_folder / "comparison.html")
    for picture in ("calibration", "volatility", "fan charts"):
        assert page.query_selector(f"img[alt='{picture}']") is not None, picture
    assert "Distributions: " in page.inner_text("#answer")
    table = pd.read_csv(run_folder / "comparison.csv").set_index("method")
    shown = page.inner_text("#summary")
    assert "the reference of the distribution tests" in shown and table.loc["lora", "distribution_verdict"] in shown
    assert errors == []


def test_the_side_by_side_tearsheet_holds_every_row_that_traded_and_names_those_that_never_did(run_folder):
    table = pd.read_csv(run_folder / "comparison.csv")
    keys = table["key"] if "key" in table else table["method"]
    traded = int((table["trades"] > 0).sum())
    assert 0 < traded <= 9
    assert f"every row that traded ({traded})" in (run_folder / "tearsheets" / "all.html").read_text()
    # naive forecasts the last close: a threshold rule never trades it, so the page always has rows to leave out
    assert table.loc[table["method"] == "naive", "trades"].tolist() == [0]
    page = (run_folder / "comparison.html").read_text()
    assert _left_out_never_traded(page) == set(keys[table["trades"] == 0])


def _left_out_never_traded(page: str) -> set[str]:
    """The rows the page's side-by-side note names as left out because they never traded."""
    named = re.search(r"left out, never traded: ([^;)]*)", page)
    return set(named.group(1).split(", ")) if named else set()


def test_compare_builds_the_same_page(run_folder, tmp_path, browser):
    compare([run_folder], tmp_path / "again")
    pages = [_open(browser, folder / "comparison.html")[0] for folder in (run_folder, tmp_path / "again")]
    assert pages[0].inner_text("#answer") == pages[1].inner_text("#answer")
    assert pages[0].inner_text("#summary") == pages[1].inner_text("#summary")
    assert pages[1].query_selector("img[alt='loss curves']") is not None


def _row(method, kind, dm_holm, dm_stat, in_mcs, trainable):
    return {"method": method, "kind": kind, "dm_holm": dm_holm, "dm_stat": dm_stat, "in_mcs": in_mcs,
            "trainable_params": trainable, "train_seconds": 60.0, "mse_vs_naive": -0.02, "mse_vs_naive_low": -0.03,
            "mse_vs_naive_high": -0.01, "verdict": "beats naive (Holm p=0.001)"}


def test_the_recommendation_is_the_cheapest_method_that_beats_naive_and_is_in_the_confidence_set():
    table = pd.DataFrame([_row("full", "llm", 0.001, -5, True, 1_800_000), _row("lora", "llm", 0.002, -4, True, 24_576),
                          _row("adapter", "llm", 0.30, -1, True, 19_248), _row("ia3", "llm", 0.001, -4, False, 5_000),
                          {**_row("naive", "baseline", float("nan"), float("nan"), False, float("nan")),
                           "verdict": "no evidence of edge"}])
    first, cost, trading = recommendation(table)
    assert first.startswith("Use lora:") and "the cheapest of 2" in first
    assert "24,576 parameters" in cost and "-2.00%" in cost and trading.startswith("Trading: no row")
    assert recommendation(table.assign(dm_holm=0.5))[0].startswith("None beats the baselines")


def test_every_rows_sharpe_is_its_tearsheets(run_folder):
    """comparison.csv and the quantstats tearsheets use the same trading days and periods per year."""
    table = pd.read_csv(run_folder / "comparison.csv")
    traded = table[table["trades"] > 0]
    assert len(traded)
    for _, row in traded.iterrows():
        page = (run_folder / "tearsheets" / f"{row['method']}.html").read_text()
        # the metrics table's columns: Metric, the benchmark, then the strategy
        shown = float(re.search(r"<td>Sharpe</td>\s*<td>-?[\d.]+</td>\s*<td>(-?[\d.]+)</td>", page).group(1))
        assert shown == pytest.approx(row["sharpe"], abs=0.006), row["method"]
