"""The comparison page, opened in a real browser (Debian's Chromium through playwright; nothing downloaded)."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from llmsignal.backtests import report
from llmsignal.backtests.race import race_figure, race_findings, race_html, race_table, series_styles
from llmsignal.backtests.report import recommendation
from llmsignal.backtests.results import BENCHMARK, row_key
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


def _open(browser, path: Path, width: int = 1366):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.resolve().as_uri())
    return page, errors


@pytest.mark.parametrize("width", [390, 1366])
def test_the_page_fits_a_phone_and_a_laptop_without_scrolling_sideways(run_folder, browser, width):
    page, errors = _open(browser, run_folder / "comparison.html", width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.body.scrollWidth") <= width
    assert "width=device-width" in page.get_attribute("meta[name=viewport]", "content")
    for image in page.query_selector_all("img"):  # every picture shrinks to the page
        assert image.bounding_box()["width"] <= width, image.get_attribute("alt")
    # the first screen names the data and the strategies
    context = page.inner_text("#context")
    box = page.query_selector("#context").bounding_box()
    assert context.startswith("Data: ") and "strategies: ThresholdStrategy" in context and box["y"] < 900
    assert errors == []


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
    table = pd.read_csv(run_folder / "comparison.csv").drop_duplicates("method").set_index("method")
    shown = page.inner_text("#summary")
    assert "the reference of the distribution tests" in shown and table.loc["lora", "distribution_verdict"] in shown
    assert "har-range's" in table.loc["lora", "distribution_verdict"] and "har-range" in shown
    assert errors == []


def test_the_page_shows_what_each_sigma_earns_sizing_a_long_position(run_folder, browser, tmp_path):
    volatility = pd.read_csv(run_folder / "volatility.csv")
    page, errors = _open(browser, run_folder / "comparison.html")
    section = page.inner_text("#volatility")
    assert section.startswith("Volatility that pays") and "side=long" in section
    for _, row in volatility.iterrows():  # every row with its Sharpe ratio, and its interval where one was found
        interval = "" if np.isnan(row["sharpe_ci_low"]) else \
            f" ({row['sharpe_ci_low']:.2f} to {row['sharpe_ci_high']:.2f})"
        assert f"\n{row['method']}\t" in section and f"{row['sharpe']:.2f}{interval}" in section
    assert {"garch", "har-range", "lora"} <= set(volatility["method"])
    compare([run_folder], tmp_path / "again")  # a rebuilt page keeps the section
    assert _open(browser, tmp_path / "again" / "comparison.html")[0].inner_text("#volatility") == section
    assert errors == []


def _keys(table: pd.DataFrame) -> list[str]:
    strategies = table["strategy"].nunique()
    return [row_key(m, s, strategies) for m, s in zip(table["method"], table["strategy"], strict=True)]


def test_by_default_every_tuned_method_trades_under_one_strategy_at_least(run_folder):
    table = pd.read_csv(run_folder / "comparison.csv")
    assert sorted(table["strategy"].unique()) == ["SideStrategy", "ThresholdStrategy"]
    tuned = table[table["kind"] == "llm"]
    assert (tuned[tuned["strategy"] == "SideStrategy"]["trades"] > 0).all()
    for key in _keys(table):  # and so every tuned method has a tearsheet drawn from trades
        page = (run_folder / "tearsheets" / f"{key}.html").read_text()
        assert ("never held a position" in page) == (table.loc[_keys(table).index(key), "trades"] == 0), key


@pytest.mark.parametrize("width", [390, 1366])
def test_the_side_by_side_page_shows_every_row_and_fits_without_scrolling_sideways(run_folder, browser, width):
    page, errors = _open(browser, run_folder / "tearsheets" / "all.html", width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for image in page.query_selector_all("img"):
        assert image.bounding_box()["width"] <= width, image.get_attribute("alt")
    table = pd.read_csv(run_folder / "comparison.csv")
    shown = page.eval_on_selector_all("tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    assert sorted(k for k in shown if k) == sorted(_keys(table))  # the tuned methods, traded or not, and baselines
    assert shown.count("") == table["strategy"].nunique()  # buy & hold under each strategy
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
        assert (run_folder / "tearsheets" / href).resolve().is_file(), href
    assert errors == []


def test_the_side_by_side_pages_sharpe_and_max_drawdown_are_comparison_csvs(run_folder, browser):
    page, _ = _open(browser, run_folder / "tearsheets" / "all.html")
    cells = page.eval_on_selector_all("tr[data-key]", """rows => rows.map(r => [r.dataset.key,
        r.querySelector('td.sharpe').innerText, r.querySelector('td.max_drawdown').innerText])""")
    shown = {key: (sharpe, drawdown) for key, sharpe, drawdown in cells if key}
    table = pd.read_csv(run_folder / "comparison.csv")
    assert len(shown) == len(table)
    for key, (_, row) in zip(_keys(table), table.iterrows(), strict=True):
        sharpe, drawdown = shown[key]
        if row["trades"] > 0:
            assert float(sharpe) == pytest.approx(row["sharpe"], abs=0.005), key
        else:
            assert sharpe == "–", key
        assert float(drawdown.rstrip("%")) == pytest.approx(row["max_drawdown"] * 100, abs=0.005), key


def test_the_terminal_answer_has_a_line_per_method_and_a_sharpe_column_per_strategy(run_folder):
    table = pd.read_csv(run_folder / "comparison.csv")
    lines = "\n".join(report.answer_lines(table)).splitlines()  # as the terminal prints them
    assert len(lines) <= 15
    header, *body = lines[lines.index("") + 1:]
    assert "Threshold Sharpe (trades)" in header and "Side Sharpe (trades)" in header
    assert [line.split()[0] for line in body] == [*table.loc[table["kind"] == "llm", "method"].unique(), "naive",
                                                  "garch", "har-range"]
    side = table[table["strategy"] == "SideStrategy"].set_index("method")
    for line in body:
        method = line.split()[0]
        assert f"({side.loc[method, 'trades']:,.0f})" in line, line
    assert not any("edge" in line or "loses money" in line for line in body)  # the trading verdicts: the headline's


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
    for key, (_, row) in zip(_keys(table), table.iterrows(), strict=True):
        if row["trades"] == 0:
            continue
        page = (run_folder / "tearsheets" / f"{key}.html").read_text()
        # the metrics table's columns: Metric, the benchmark, then the strategy
        shown = float(re.search(r"<td>Sharpe</td>\s*<td>-?[\d.]+</td>\s*<td>(-?[\d.]+)</td>", page).group(1))
        assert shown == pytest.approx(row["sharpe"], abs=0.006), row["method"]
        figures = re.search(r'id="llmsignal-figures">(.*?)</p>', page, re.S).group(1)
        assert f"max drawdown {row['max_drawdown']:.2%}" in figures and f"Sharpe {row['sharpe']:.2f}" in figures


def test_a_tearsheet_of_a_short_test_has_no_empty_panels_no_missing_glyph_and_only_the_tests_months(run_folder):
    table = pd.read_csv(run_folder / "comparison.csv")
    key = _keys(table)[int(np.argmax(table["trades"].to_numpy()))]
    page = (run_folder / "tearsheets" / f"{key}.html").read_text()
    assert "\ufe6a" not in page and "CAGR" in page  # quantstats' "CAGR﹪": a box in most fonts
    assert 'id="rolling_' not in page  # half-year windows on a test of days: empty panels dated 1970
    assert "qtpylib.io" not in page  # an offline page fetches nothing
    equity = pd.read_csv(run_folder / "equity.csv", index_col=0, parse_dates=[0])[key].dropna()
    months = re.findall(r"<td>(\w{3} \d{4})</td>", page)
    assert months == list(dict.fromkeys(equity.index.strftime("%b %Y")))  # no 0.00 for months outside the test
    assert 'alt="drawdown"' in page


# The figures, drawn directly: where each legend sits, how many colours, the y range, the gaps, untrained methods.


def _frames(names: list[str], bars: int = 300) -> dict[str, pd.DataFrame]:
    """Hourly bars over two weekends (FX closes Friday 21:00, reopens Sunday 22:00), with distributions."""
    hours = pd.date_range("2024-01-03", periods=24 * 21, freq="h")
    hours = hours[~(((hours.dayofweek == 4) & (hours.hour > 21)) | (hours.dayofweek == 5)
                    | ((hours.dayofweek == 6) & (hours.hour < 22)))][:bars]
    rng = np.random.default_rng(0)
    close = pd.Series(1.1 + np.cumsum(rng.normal(0, 1e-3, len(hours))), hours)
    frames = {}
    for i, name in enumerate(names):
        forecast = close * (1 + rng.normal(0, 2e-4, len(hours)) * (i + 1))
        sigma = pd.Series(np.abs(rng.normal(1e-3, 2e-4, len(hours))), hours)
        frame = pd.DataFrame({"close": close, "forecast": forecast, "sigma": sigma})
        for q, z in zip(report.QUANTILE_LEVELS, (-1.64, -0.67, 0, 0.67, 1.64), strict=True):
            frame[q] = forecast * (1 + z * sigma)
        frames[name] = frame
    return frames


def _table(names: list[str]) -> pd.DataFrame:
    rows = [{"method": name, "kind": "llm", "strategy": "ThresholdStrategy", "key": name,
             "trainable_params": 0 if name == "zero-shot" else 10 ** (3 + i % 4), "train_seconds": 0.0
             if name == "zero-shot" else 10.0 + i, "mse": 1e-6, "mse_vs_naive": 0.001 * (i - 1),
             "mse_vs_naive_low": 0.001 * (i - 1) - 0.002, "mse_vs_naive_high": 0.001 * (i - 1) + 0.002,
             "val_loss": 1.4 + 0.01 * i} for i, name in enumerate(names)]
    return pd.DataFrame([*rows, {"method": "naive", "kind": "baseline", "strategy": "ThresholdStrategy",
                                 "key": "naive", "mse": 1e-6, "mse_vs_naive": 0.0}])


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def _legend_outside_every_axes(fig) -> None:
    """Every legend is the figure's and lies outside each visible axes' data area (it covers nothing drawn)."""
    fig = _drawn(fig)
    assert all(ax.get_legend() is None for ax in fig.axes), "a legend inside the axes"
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                area = ax.get_window_extent(renderer)
                assert not box.overlaps(area), (legend.get_texts()[0].get_text(), box, area)


def _series_styles(fig) -> dict[str, tuple[str, str]]:
    """Each labelled line of the figure's axes: its colour and line style."""
    return {line.get_label(): (to_hex(line.get_color()), line.get_linestyle()) for ax in fig.axes
            for line in ax.get_lines() if not line.get_label().startswith("_")}


METHODS = ["adapter", "bitfit", "full", "ia3", "lora", "naive", "drift", "ar", "garch", "scratch", "prefix",
           "prompt", "climatology"]  # 13: more than the 10 colours matplotlib cycles through


@pytest.mark.parametrize("draw", ["equity", "forecast", "volatility", "histogram", "loss", "fan", "race", "cost"])
def test_every_legend_is_outside_the_data(draw):
    frames = _frames(METHODS[:6])
    fig = _figure(draw, frames)
    _legend_outside_every_axes(fig)
    if draw not in ("fan", "cost"):
        assert fig.legends, "no legend"


def _figure(draw: str, frames: dict[str, pd.DataFrame], styles=None):
    names = list(frames)
    if draw == "equity":
        curves = {name: frame["forecast"] / frame["forecast"].iloc[0] for name, frame in frames.items()}
        return report.equity_figure({**curves, BENCHMARK: next(iter(frames.values()))["close"]}, styles)
    if draw == "forecast":
        return report.forecast_figure(frames, styles=styles)
    if draw == "volatility":
        return report.volatility_figure(frames, styles=styles)
    if draw == "histogram":
        return report.return_histogram(frames, 0.5, styles)
    if draw == "fan":
        return report.fan_chart(frames, styles=styles)
    if draw == "loss":
        return report.loss_figure({name: list(1.5 - 0.001 * np.arange(50) * (i + 1)) for i, name in enumerate(names)},
                                  _table(names), styles)
    if draw == "race":
        return race_figure({name: [_trial(1e-3, [2.8 if name == "scratch" else 1.5, 1.45 - i / 100, 1.4 - i / 100])]
                            for i, name in enumerate(names)}, styles)
    return report.cost_figure(_table(names), styles)


def _trial(lr, losses, steps=100):
    curve = [[step, step / 10, loss] for step, loss in zip(np.linspace(0, steps, len(losses)), losses, strict=True)]
    return {"lr": lr, "val_loss": min(losses), "steps_used": steps, "best_step": steps, "seconds": steps / 10,
            "val_curve": curve}


@pytest.mark.parametrize("draw", ["equity", "forecast", "volatility", "loss", "race"])
@pytest.mark.parametrize("count", [3, 13, 21])
def test_one_colour_per_series_the_same_in_every_chart_and_buy_and_hold_black_dashed(draw, count):
    names = [f"m{i:02d}" for i in range(count)]
    styles = series_styles(names)
    drawn = _series_styles(_figure(draw, _frames(names), styles))
    series = {name: drawn[name] for name in drawn if name.split(" ")[0] in names}
    assert len(series) == count
    assert len({colour for colour, _ in series.values()}) == min(count, 20)  # tab20, then line styles
    assert len(set(series.values())) == count
    for label, (colour, _) in series.items():  # each method's colour is the page's for it
        assert colour == to_hex(styles[label.split(" ")[0]]["color"]), label
    if draw == "equity":
        assert drawn[BENCHMARK] == ("#000000", "--")


def test_the_race_and_loss_axes_show_the_differences_not_scratchs_first_loss():
    names = ["full", "lora", "scratch"]
    race = {name: [_trial(1e-3, [2.8 if name == "scratch" else 1.50, 1.46 + i / 50, 1.42 + i / 50])]
            for i, name in enumerate(names)}
    low, high = race_figure(race).axes[0].get_ylim()
    assert high < 2.0 and (1.44 - 1.42) / (high - low) > 0.05
    losses = {name: [2.8 if name == "scratch" else 1.5] * 3 + list(1.45 - np.arange(60) / 1000 * (i + 1))
              for i, name in enumerate(names)}
    low, high = report.loss_figure(losses, _table(names)).axes[0].get_ylim()
    assert high < 2.0 and 0.06 / (high - low) > 0.2


def test_zero_shot_is_not_drawn_or_judged_as_trained():
    zero = [_trial(1e-3, [1.6, 1.6, 1.6], steps=0), _trial(3e-3, [1.6, 1.6, 1.6], steps=0)]
    race = {"lora": [_trial(1e-3, [1.5, 1.45, 1.4])], "zero-shot": zero}
    labels = [line.get_label() for ax in race_figure(race).axes for line in ax.get_lines()]
    assert not any("zero-shot" in label for label in labels)
    assert not any("zero-shot" in line for line in race_findings(race))
    assert set(race_table(race)["method"]) == {"lora"}
    page = race_html(race, "data:,")
    assert "Not in the race, trained nothing: zero-shot" in page and "lr 0.001" not in page
    # named otherwise, a method whose trials took no step is left out the same way
    assert set(race_table({"lora": race["lora"], "frozen": zero})["method"]) == {"lora"}


@pytest.mark.parametrize("draw", ["forecast", "volatility"])
def test_lines_stop_at_the_weekend(draw):
    fig = _figure(draw, _frames(["lora", "full"]))
    for line in fig.axes[0].get_lines():
        x = pd.DatetimeIndex(line.get_xdata())
        y = np.asarray(line.get_ydata(), dtype=float)
        step = pd.Series(x).diff().median()
        spans = [(b - a) for a, b, ya, yb in zip(x[:-1], x[1:], y[:-1], y[1:], strict=True)
                 if np.isfinite(ya) and np.isfinite(yb)]
        assert max(spans) <= report.GAP * step, line.get_label()
        assert np.isnan(y).any(), line.get_label()  # the two weekends break it


def test_the_fan_bands_stop_at_the_weekend():
    fig = _figure("fan", _frames(["lora"]))
    bands = fig.axes[0].collections[:2]
    assert all(len(band.get_paths()) >= 2 for band in bands)  # one polygon per week


def test_the_cost_chart_shows_the_error_against_naive_with_intervals_and_no_fake_zero():
    names = ["full", "lora", "zero-shot"]
    fig = _drawn(report.cost_figure(_table(names)))
    params, seconds = fig.axes[:2]
    labels = {line.get_label() for line in params.get_lines()} | {c.get_label() for c in params.containers}
    assert "zero-shot" not in labels and {"full", "lora"} <= labels
    assert "zero-shot" in params.get_title(loc="left")
    low, high = params.get_ylim()
    assert low < 0 < high and high - low < 2  # percent: the ±0.3% spread, naive's 0 in view
    bars = [c for c in params.containers if c.has_yerr]
    assert len(bars) == 2
    assert params.get_xscale() == "log"
    assert min(bar.lines[0].get_xdata()[0] for bar in bars) >= 1000  # no 0 parameters drawn at 10^0
    assert "zero-shot" in seconds.get_title(loc="left")  # 0 seconds of training: named, not drawn either


def test_a_row_that_never_traded_has_no_sharpe_and_the_first_screen_names_data_and_strategies():
    table = pd.DataFrame([{"method": "naive", "kind": "baseline", "strategy": "T", "key": "naive", "trades": 0,
                           "sharpe": 0.0, "sharpe_ci_low": 0.0, "sharpe_ci_high": 0.0},
                          {"method": "lora", "kind": "llm", "strategy": "T", "key": "lora", "trades": 12,
                           "sharpe": 1.234, "sharpe_ci_low": -0.5, "sharpe_ci_high": 2.0}])
    cells = re.findall(r"<tr class=\"\w+\">(.*?)</tr>", report.summary_table(table))
    sharpe = [re.findall(r"<td[^>]*>(.*?)</td>", row)[2] for row in cells]
    assert sharpe[0] == "–" and sharpe[1].startswith("1.23")
    line = report.context_line({"data": "EURUSD H1", "strategies": "ThresholdStrategy {'threshold_bps': 0.5}"})
    assert "Data: EURUSD H1" in line and "strategies: ThresholdStrategy" in line
    both = report.context_line({"a: data": "x.csv", "b: data": "x.csv", "a: strategies": "T", "b: strategies": "U"})
    assert "Data: x.csv ·" in both and "strategies: T; U" in both
