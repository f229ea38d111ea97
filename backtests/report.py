"""Tearsheets and the comparison page: forecast error, P&L, significance and cost side by side.

The page is one self-contained HTML file (images embedded as PNG data URIs) that opens offline.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import logging
import re
import tempfile
import warnings
from importlib.resources import files
from pathlib import Path
from string import Template
from unittest import mock

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from scipy import stats

from llmsignal.backtests.evaluation import pretraining_question
from llmsignal.backtests.metrics import FX, Calendar, period_returns, trading_performance
from llmsignal.backtests.race import (
    BENCHMARK_STYLE,
    UNTRAINED,
    above,
    race_figure,
    race_html,
    robust_limits,
    series_styles,
    trained,
)
from llmsignal.backtests.results import (
    BENCHMARK,
    RunOutputs,
    better,
    cannot_write,
    columns,
    needs_trades,
    write_atomic,
)
from llmsignal.backtests.significance import TRADING_VERDICTS

DISTRIBUTION_REFERENCES = {"garch": "", "har-range": "_range"}  # each reference's column suffix (results.METRICS)


def template(name: str) -> str:
    """A file of ``backtests/templates``: the pages' HTML, CSS and scripts live there, not in code."""
    return (files("llmsignal.backtests") / "templates" / name).read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    """The template ``name`` with each ``$key`` replaced by ``values[key]`` (already escaped HTML)."""
    return Template(template(name)).substitute(values)


@contextlib.contextmanager
def quiet():
    """Silence quantstats' and matplotlib's chatter (missing Arial font, pandas deprecations)."""
    logger = logging.getLogger("matplotlib.font_manager")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def tearsheet(equity: pd.Series, benchmark: pd.Series, title: str, path: Path, calendar: Calendar = FX,
              row: pd.Series | None = None) -> None:
    """A quantstats HTML tearsheet of the period returns that ``comparison.csv`` uses, buy-and-hold as benchmark.

    Dates are not matched (quantstats would drop a strategy's flat first days), so its Sharpe is the
    comparison's. Its drawdown chart and monthly returns are replaced by ours (drawn from every bar, and only
    the months of the test), its rolling panels are left out when the test is shorter than their half-year window,
    and ``row`` (the comparison's row) heads the page with the comparison's own figures.
    """
    matplotlib.use("Agg")  # quantstats draws with pyplot; backtrader's own plot() would force TkAgg
    import matplotlib.pyplot as plt
    import quantstats as qs

    returns, bench = period_returns(equity, calendar), period_returns(benchmark, calendar)
    bench.name, returns.name = BENCHMARK, title
    if returns.std() == 0:  # quantstats cannot regress a flat curve on the benchmark
        write_atomic(path, f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                     "<p>The strategy never held a position on these forecasts: no tearsheet.</p>")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with cannot_write(path), quiet(), tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as folder:
        drawn = Path(folder) / path.name
        shape = Path(folder) / "template.html"
        long = len(returns) >= -(-calendar.periods_per_year // 2)  # quantstats' rolling window: half a year
        shape.write_text(_quantstats_template(qs, long), encoding="utf-8")
        left_out = ("drawdown", "monthly_heatmap", *(() if long else ROLLING))
        # quantstats draws every chart whatever its template shows: the left-out ones were a third of its time
        with mock.patch.multiple(qs.plots, **dict.fromkeys(left_out, _not_drawn)):
            qs.reports.html(returns, benchmark=bench, output=str(drawn), title=title, download_filename=path.name,
                            periods_per_year=calendar.periods_per_year, match_dates=False, template_path=str(shape))
        plt.close("all")
        curves = {title: equity, BENCHMARK: benchmark}
        page = drawn.read_text(encoding="utf-8").replace("\ufe6a", "")  # "CAGR﹪": a glyph few fonts have
        page = page.replace(_MARK.format("figures"), _row_figures(row, equity, calendar))
        page = page.replace(_MARK.format("drawdown"), "<h3>Drawdown, every bar</h3>"
                            f'<img src="{_png(drawdown_figure(curves))}" alt="drawdown">')
        page = page.replace(_MARK.format("monthly"), "<h3>Monthly returns</h3>" + _monthly_html(curves, calendar))
        write_atomic(path, page)


_MARK = "<!--llmsignal:{}-->"  # where the tearsheet's own parts go in quantstats' page
ROLLING = ("rolling_beta", "rolling_volatility", "rolling_sharpe", "rolling_sortino")  # quantstats' half-year panels


def _not_drawn(*args: object, **kwargs: object) -> None:
    """A quantstats chart that the tearsheet leaves out: not drawn at all."""


def _quantstats_template(qs, long: bool) -> str:
    """quantstats' report template with our drawdown and monthly returns in place of its own, no icon fetched from
    the web, and its rolling panels only when the test is ``long`` enough to fill their window."""
    text = (Path(qs.__file__).parent / "report.html").read_text(encoding="utf-8")
    edits = {r'\s*<link rel="shortcut icon"[^>]*>': "", r'<body onload="save\(\)">': "<body>",
             r"\{\{dd_plot\}\}": _MARK.format("drawdown"), r"\{\{monthly_heatmap\}\}": _MARK.format("monthly"),
             r"(</h4>\s*<hr>)": r"\1" + _MARK.format("figures")}
    if not long:
        edits[r'<div id="rolling_\w+">\{\{rolling_\w+\}\}</div>'] = ""
    for pattern, replacement in edits.items():
        text, found = re.subn(pattern, replacement, text)
        if not found:
            raise RuntimeError(f"quantstats' report.html has no {pattern!r}: its template changed (report.tearsheet)")
    return text


def _row_figures(row: pd.Series | None, equity: pd.Series, calendar: Calendar) -> str:
    """The comparison's figures for this row, above quantstats' own (whose drawdowns see day closes only)."""
    figures = trading_performance(equity, calendar) if row is None else row
    trades = "" if row is None else f", {row['trades']:,.0f} trades"
    return ('<p id="llmsignal-figures"><strong>As in comparison.csv:</strong> Sharpe '
            f"{figures['sharpe']:.2f}, total return {figures['total_return']:+.2%}, max drawdown "
            f"{figures['max_drawdown']:.2%} (from every bar){trades}. quantstats' metrics below use the same daily "
            "returns, so its Sharpe ratio is the same; its Max Drawdown sees day closes only and can be shallower.</p>")


def drawdown_figure(curves: dict[str, pd.Series], styles: dict[str, dict] | None = None) -> Figure:
    """The drawdown of each equity curve at every bar, in percent with the decimals its depth needs."""
    styles = _styles(curves, styles)
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.subplots()
    for name, equity in curves.items():
        ax.plot(equity.index, equity / equity.cummax() - 1, linewidth=0.9, label=name, **_style(name, styles))
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    _legend_below(fig, len(curves))
    return fig


def _percent_axis(ax) -> None:
    """Fractions as percent, with as many decimals as the axis' range needs (never "-0%" on every tick)."""
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))


def _monthly_html(curves: dict[str, pd.Series], calendar: Calendar) -> str:
    """Compounded returns of each calendar month with test bars (the first and last may be partial), one column
    per equity curve."""
    returns = pd.DataFrame({name: period_returns(equity, calendar) for name, equity in curves.items()})
    monthly = (1 + returns.fillna(0.0)).groupby(returns.index.to_period("M")).prod() - 1
    monthly.insert(0, "month", monthly.index.strftime("%b %Y"))
    return ('<div class="wide">' + monthly.to_html(index=False, float_format=lambda v: f"{v:+.2%}", classes="monthly",
                                                   border=0) + "</div>")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


GAP = 4  # a time gap between bars this many times their median spacing (a weekend in hourly bars) breaks a line


def broken_at_gaps(frame: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """``frame`` with a row of NaN inside every gap longer than ``GAP`` times the median bar spacing, so that a
    line drawn from it stops at a weekend instead of bridging it.

    >>> index = pd.to_datetime(["2024-01-05 21:00", "2024-01-05 22:00", "2024-01-07 22:00", "2024-01-07 23:00"])
    >>> int(broken_at_gaps(pd.Series([1.0, 2.0, 3.0, 4.0], index)).isna().sum())
    1
    """
    index = frame.index
    if len(index) < 3 or not isinstance(index, pd.DatetimeIndex):
        return frame
    spacing = index.to_series().diff()
    step = spacing.median()
    gaps = spacing > GAP * step
    if not gaps.any():
        return frame
    holes = index[np.r_[gaps.to_numpy()[1:], False]] + step  # one bar after each bar that a gap follows
    blank = (pd.Series(np.nan, index=holes, name=frame.name) if isinstance(frame, pd.Series)
             else pd.DataFrame(np.nan, index=holes, columns=frame.columns))
    return pd.concat([frame, blank]).sort_index()


def _styles(names, styles: dict[str, dict] | None) -> dict[str, dict]:
    """The page's colours where given (every chart draws a method alike), else a mapping of these names."""
    names = list(names)
    if styles is not None and all(name in styles for name in names if name != BENCHMARK):
        return styles
    return series_styles(name for name in names if name != BENCHMARK)


def _style(name: str, styles: dict[str, dict]) -> dict:
    return dict(BENCHMARK_STYLE) if name == BENCHMARK else dict(styles[name])


def _legend_below(fig: Figure, count: int, columns: int = 6) -> None:
    """The figure's legend under its axes (``fig`` has constrained layout), where it covers no data."""
    if count:
        fig.legend(loc="outside lower center", ncol=max(1, min(columns, count)), fontsize=8, frameon=False)


def equity_figure(curves: dict[str, pd.Series], styles: dict[str, dict] | None = None) -> Figure:
    """Equity curves (rebased to 1) above their drawdowns, every method and baseline in one figure."""
    styles = _styles(curves, styles)
    fig = Figure(figsize=(11, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for name, equity in curves.items():
        style = _style(name, styles)
        top.plot(equity.index, equity / equity.iloc[0], label=name, linewidth=1.1, **style)
        bottom.plot(equity.index, equity / equity.cummax() - 1, linewidth=0.9, **style)
    top.set_ylabel("equity (start = 1)")
    bottom.set_ylabel("drawdown")
    _percent_axis(bottom)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    bottom.tick_params(axis="x", labelrotation=30)
    _legend_below(fig, len(curves))
    return fig


def forecast_figure(forecasts: dict[str, pd.DataFrame], bars: int = 120,
                    styles: dict[str, dict] | None = None) -> Figure:
    """Forecast against actual next close on the last ``bars`` test bars; lines stop at gaps (weekends)."""
    styles = _styles(forecasts, styles)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax = fig.subplots()
    first = next(iter(forecasts.values())).iloc[-bars:]
    actual = broken_at_gaps(first["close"].shift(-1))
    ax.plot(actual.index, actual, color="black", linewidth=1.6, label="actual next close")
    for name, frame in forecasts.items():
        forecast = broken_at_gaps(frame["forecast"].iloc[-bars:])
        ax.plot(forecast.index, forecast, linewidth=0.9, label=name, **styles[name])
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    _legend_below(fig, len(forecasts) + 1)
    return fig


QUANTILE_LEVELS = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}  # predictions.csv's quantiles


def _with_distribution(forecasts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The forecasts that carry ``sigma`` and the quantiles (a run from before they existed has none)."""
    return {name: frame for name, frame in forecasts.items() if {"sigma", *QUANTILE_LEVELS} <= set(frame.columns)}


def calibration_figure(forecasts: dict[str, pd.DataFrame], styles: dict[str, dict] | None = None) -> Figure:
    """A PIT histogram per method, binned at its quantiles: where each next close fell among q05 .. q95.

    Each bar's height is the share of next closes in that band over the share a calibrated forecast puts
    there, so a calibrated forecaster is flat at 1; tall outer bars mean intervals too narrow.
    """
    shown = _with_distribution(forecasts)
    styles = _styles(shown, styles)
    columns = min(5, max(1, len(shown)))
    rows = -(-len(shown) // columns)
    fig = Figure(figsize=(11, 2.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    edges = np.r_[0.0, list(QUANTILE_LEVELS.values()), 1.0]
    for ax, (name, frame) in zip(axes, shown.items(), strict=False):
        actual = frame["close"].shift(-1).to_numpy()[:-1]
        quantiles = frame[list(QUANTILE_LEVELS)].to_numpy()[:-1]
        band = (actual[:, None] > quantiles).sum(1)  # 0: below q05, ..., 5: above q95
        share = np.bincount(band, minlength=len(edges) - 1) / len(band)
        ax.bar(edges[:-1], share / np.diff(edges), width=np.diff(edges), align="edge", edgecolor="white",
               color=styles[name]["color"])
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    fig.supxlabel("PIT: where the next close fell in the forecast distribution (bands between q05 .. q95)",
                  fontsize=9)
    fig.supylabel("share / calibrated share", fontsize=9)
    return fig


def volatility_figure(forecasts: dict[str, pd.DataFrame], window: int = 24,
                      styles: dict[str, dict] | None = None) -> Figure:
    """Each method's predicted sigma against the realised size of the next return, both averaged over
    ``window`` bars; the legend gives the Spearman correlation of sigma with |next return| bar by bar."""
    shown = _with_distribution(forecasts)
    styles = _styles(shown, styles)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax = fig.subplots()
    if shown:
        close = next(iter(shown.values()))["close"]
        realised = np.log(close.shift(-1) / close) * 1e4
        rms = broken_at_gaps(np.sqrt((realised**2).rolling(window, min_periods=1).mean()))
        ax.plot(rms.index, rms, color="black", linewidth=1.6, label=f"realised (RMS of the next return, {window} bars)")
        for name, frame in shown.items():
            sigma = frame["sigma"] * 1e4
            # a constant sigma (naive, drift, climatology) has no rank correlation
            rho = (f" (ρ {stats.spearmanr(sigma.iloc[:-1], realised.abs().iloc[:-1]).statistic:.2f})"
                   if sigma.nunique() > 1 else "")
            mean = broken_at_gaps(sigma.rolling(window, min_periods=1).mean())
            ax.plot(mean.index, mean, linewidth=0.9, label=name + rho, **styles[name])
    ax.set_ylabel(f"volatility, bp per bar ({window}-bar mean)")
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    _legend_below(fig, len(shown) + 1 if shown else 0, columns=4)
    return fig


def fan_chart(forecasts: dict[str, pd.DataFrame], bars: int = 120, styles: dict[str, dict] | None = None) -> Figure:
    """Each method's q05-q95 and q25-q75 of the next close with the actual next close, over the last ``bars``.

    Drawn in basis points from each bar's close, so that the band's width is readable at any price level; an
    actual next close outside q05-q95 is marked; the bands stop at gaps (weekends).
    """
    shown = _with_distribution(forecasts)
    styles = _styles(shown, styles)
    columns = 2
    rows = max(1, -(-len(shown) // columns))
    fig = Figure(figsize=(11, 2.2 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, frame) in zip(axes, shown.items(), strict=False):
        last = frame.iloc[-bars:]
        drawn = pd.DataFrame({q: (last[q] / last["close"] - 1) * 1e4 for q in QUANTILE_LEVELS})
        drawn["actual"] = (last["close"].shift(-1) / last["close"] - 1) * 1e4
        outside = (drawn["actual"] < drawn["q05"]) | (drawn["actual"] > drawn["q95"])
        band = broken_at_gaps(drawn)
        colour = styles[name]["color"]
        ax.fill_between(band.index, band["q05"], band["q95"], alpha=0.25, linewidth=0, color=colour,
                        label="q05–q95")
        ax.fill_between(band.index, band["q25"], band["q75"], alpha=0.5, linewidth=0, color=colour, label="q25–q75")
        ax.plot(drawn.index, drawn["actual"], ".", color="black", markersize=2.5, label="actual next close")
        ax.plot(drawn.index[outside], drawn["actual"][outside], "o", color="tab:red", markersize=3.5,
                fillstyle="none", label="outside q05–q95")
        ax.set_title(f"{name}: {outside.sum()} of {int(drawn['actual'].notna().sum())} outside", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    if shown:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.supylabel("next close, bp from this close", fontsize=9)
    return fig


def cost_figure(table: pd.DataFrame, styles: dict[str, dict] | None = None) -> Figure:
    """Squared error against naive (with its 95% interval) against trainable parameters and training seconds, one
    point per tuned method; 0 on the y axis is naive's level. A method with no trainable parameters (or no
    training time) has no place on a log axis: it is named under the panel instead."""
    tuned = table[table["kind"] == "llm"].drop_duplicates("method")
    styles = _styles(tuned["method"], styles)
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    value = pd.to_numeric(tuned.get("mse_vs_naive"), errors="coerce") * 100
    low = pd.to_numeric(tuned.get("mse_vs_naive_low"), errors="coerce").mul(100).fillna(value)
    high = pd.to_numeric(tuned.get("mse_vs_naive_high"), errors="coerce").mul(100).fillna(value)
    for ax, column in zip(axes, ("trainable_params", "train_seconds"), strict=True):
        x = pd.to_numeric(tuned[column], errors="coerce")
        placed = x > 0
        for index in tuned.index[placed & value.notna()]:
            name = tuned.at[index, "method"]
            ax.errorbar([x[index]], [value[index]], yerr=[[value[index] - low[index]], [high[index] - value[index]]],
                        fmt="o", color=styles[name]["color"], capsize=4, label=name)
            ax.annotate(name, (x[index], value[index]), xytext=(5, 4), textcoords="offset points", fontsize=8)
        ax.axhline(0, color="grey", linestyle="--", linewidth=1)
        ax.annotate("naive", (0, 0), xycoords=("axes fraction", "data"), xytext=(3, 3), textcoords="offset points",
                    fontsize=8, color="grey")
        left_out = [f"{m} ({_percent(v / 100)})" for m, v in zip(tuned["method"][~placed], value[~placed],
                                                                 strict=True)]
        if left_out:
            ax.set_title(f"not on this log axis, 0 {column.replace('_', ' ')}: {', '.join(left_out)}", fontsize=8,
                         loc="left")
        if placed.any():
            ax.set_xscale("log")
            ax.margins(x=0.25)
        ax.set_xlabel(column.replace("_", " ") + " (log scale)")
        ax.grid(alpha=0.3)
    shown = pd.concat([low, high, value]).dropna()
    bottom, top = min(0.0, shown.min()) if len(shown) else -1.0, max(0.0, shown.max()) if len(shown) else 1.0
    pad = (top - bottom) * 0.1 or 1.0
    axes[0].set_ylim(bottom - pad, top + pad)
    axes[0].yaxis.set_major_formatter(PercentFormatter(decimals=1))
    axes[0].set_ylabel("squared error vs naive (95% CI); 0 = naive")
    return fig


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return html.escape(str(value))


def _eligible(table: pd.DataFrame, column: str) -> pd.Series:
    """Rows whose value in ``column`` may be marked best: a trading figure needs trades, a DA its base rate beaten."""
    if needs_trades(column) and "trades" in table:
        return table["trades"] > 0
    if column == "directional_accuracy" and "da_pvalue" in table:
        return pd.to_numeric(table["da_pvalue"], errors="coerce") < 0.05
    return pd.Series(True, index=table.index)


def metrics_table(table: pd.DataFrame) -> str:
    """A sortable table; the best value of each metric column is marked, among the rows that may win it."""
    shown = [c for c in table.columns if c != "key"]  # the key names the tearsheet; the method shows it
    marked = pd.DataFrame(False, index=table.index, columns=shown)
    for column in (c for c in shown if better(c)):
        values = pd.to_numeric(table[column], errors="coerce").where(_eligible(table, column))
        if values.notna().any():
            marked[column] = values == (values.min() if better(column) == "lower" else values.max())
    head = "".join(f"<th onclick=\"sortBy(this)\">{html.escape(c)}</th>" for c in shown)
    body = []
    for index, row in table.iterrows():
        cells = []
        for column in shown:
            text = _cell(row[column])
            if column == "method" and "key" in row:
                text = f'<a href="tearsheets/{html.escape(row["key"])}.html">{text}</a>'
            mark = ' class="best"' if marked.loc[index, column] else ""
            cells.append(f"<td{mark}>{text}</td>")
        body.append(f"<tr class=\"{row['kind']}\">{''.join(cells)}</tr>")
    return f'<table id="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def recommendation(table: pd.DataFrame, reference: str = "naive") -> list[str]:
    """Up to four lines that answer the reader's question: which method, at what cost, how sure, and whose
    forecast distribution beats GARCH's.

    A tuned method is recommended only when its forecasts beat naive after Holm's correction and it is in
    the confidence set of the most accurate; among several, the one with the fewest trainable parameters.
    """
    needed = {"dm_holm", "dm_stat", "in_mcs", "mse_vs_naive", "verdict"}
    if not needed <= set(table.columns):
        return ["This run predates the corrected verdicts (llmsignal 0.2): rerun it for a recommendation."]
    rows = table.drop_duplicates("method")
    tuned = rows[rows["kind"] == "llm"]
    winners = tuned[(tuned["dm_holm"] < 0.05) & (tuned["dm_stat"] < 0) & tuned["in_mcs"].astype(bool)]
    distributions = [_distribution_line(tuned)] if "ls_holm" in rows and rows["ls_holm"].notna().any() else []
    if winners.empty:
        in_set = int(rows["in_mcs"].astype(bool).sum())
        return ["None beats the baselines: no tuned method forecasts better than naive after correcting for "
                f"{len(tuned)} methods tried.",
                f"{in_set} of {len(rows)} forecasters are in the confidence set of the most accurate, {reference} "
                f"{'among them' if rows.loc[rows['method'] == reference, 'in_mcs'].astype(bool).any() else 'not'}.",
                "Trading: " + _trading_line(rows), *distributions]
    best = winners.sort_values("trainable_params").iloc[0]
    return [f"Use {best['method']}: its forecasts beat naive (Holm p={best['dm_holm']:.2g}) and it is in the "
            "confidence set of the most accurate" + (f", the cheapest of {len(winners)} that are" if len(winners) > 1
                                                      else "") + ".",
            f"It trains {_count(best['trainable_params'])} parameters in {_seconds(best['train_seconds'])}; its "
            f"squared errors are {_percent(best['mse_vs_naive'])} against naive "
            f"({_percent(best['mse_vs_naive_low'])} to {_percent(best['mse_vs_naive_high'])}).",
            "Trading: " + _trading_line(rows), *distributions]


def answer_lines(table: pd.DataFrame, reference: str = "naive") -> list[str]:
    """The page's headline and a compact table of the rows that matter, for a terminal: the tuned methods and the
    references every test compares with, one line each; with several strategies, a Sharpe (trades) column each and
    the forecast's verdict (the headline's trading line says which rows show an edge)."""
    rows = table[(table["kind"] == "llm") | table["method"].isin([reference, *DISTRIBUTION_REFERENCES])]
    first = rows.drop_duplicates("method").set_index("method")
    shown = pd.DataFrame({
        "MSE vs naive": first["mse_vs_naive"].map(_percent),
        "direction": first["directional_accuracy"].map(lambda v: "–" if pd.isna(v) else f"{v:.1%}"),
        "log score": first["log_score"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}")})
    for strategy, under in rows.groupby("strategy", sort=False):
        under = under.set_index("method")
        sharpe = [f"{s:+.2f}" if t > 0 else "–" for s, t in zip(under["sharpe"], under["trades"], strict=True)]
        trades = under["trades"].map(lambda v: f"{v:,.0f}")
        if table["strategy"].nunique() == 1:
            shown["Sharpe"], shown["trades"] = pd.Series(sharpe, under.index), trades
        else:
            shown[f"{_short(str(strategy))} Sharpe (trades)"] = [f"{s} ({t})" for s, t in zip(sharpe, trades,
                                                                                             strict=True)]
    verdicts = first["verdict"].fillna("")
    shown["verdict"] = (verdicts if table["strategy"].nunique() == 1 else verdicts.map(_forecast_verdict)).str.replace(
        "in the confidence set of the most accurate", "in the MCS")
    return [*recommendation(table, reference), "", shown.reset_index().to_string(index=False)]


def _short(strategy: str) -> str:
    """A strategy's name without the ``Strategy`` every shipped one ends with, for a column header."""
    return strategy.removesuffix("Strategy") or strategy


def _forecast_verdict(verdict: str) -> str:
    """The parts of a row's verdict about its forecasts (the same under every strategy), without the trading part."""
    kept = [part for part in verdict.split("; ") if not part.startswith(TRADING_VERDICTS)]
    return "; ".join(kept) or "–"


def _distribution_line(tuned: pd.DataFrame) -> str:
    """Which tuned methods' forecast distributions beat GARCH's and HAR-range's log scores after Holm's correction."""
    said = [_beats(tuned, name, suffix) for name, suffix in DISTRIBUTION_REFERENCES.items()
            if f"ls_holm{suffix}" in tuned and tuned[f"ls_holm{suffix}"].notna().any()]
    return f"Distributions: {'; '.join(said)} (log score, after Holm's correction)."


def _beats(tuned: pd.DataFrame, reference: str, suffix: str) -> str:
    """Who beats ``reference``'s log score, or the nearest when nobody does: part of the distribution line."""
    tested = tuned[tuned[f"ls_holm{suffix}"].notna()]
    beat = tested[(tested[f"ls_holm{suffix}"] < 0.05) & (tested[f"ls_dm_stat{suffix}"] < 0)]
    if beat.empty:
        closest = tested.sort_values(f"ls_dm_stat{suffix}").head(1)
        nearest = "".join(f" (nearest: {r['method']}, Holm p={r[f'ls_holm{suffix}']:.2g})"
                          for _, r in closest.iterrows())
        return f"no tuned method beats {reference}{nearest}"
    named = ", ".join(f"{r['method']} (Holm p={r[f'ls_holm{suffix}']:.2g})" for _, r in beat.iterrows())
    return f"{named} {'beats' if len(beat) == 1 else 'beat'} {reference}"


def _trading_line(rows: pd.DataFrame) -> str:
    edge = rows[rows["verdict"].str.contains(r"(?<!no )evidence of edge", regex=True)]
    if edge.empty:
        return "no row shows an edge that survives Holm's correction and the deflated Sharpe ratio."
    return f"{', '.join(edge['method'])} {'shows' if len(edge) == 1 else 'show'} an edge that survives both."


def _count(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:,.0f}"


def _seconds(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _percent(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.2%}" if abs(value) < 0.1 else f"{value:+.1%}"


def _with_interval(value: float, low: float, high: float, show) -> str:
    shown = show(value)
    return shown if pd.isna(low) else f"{shown} <small>({show(low)} to {show(high)})</small>"


def summary_table(table: pd.DataFrame) -> str:
    """One row per method and strategy, in units people read; the full table follows, collapsed."""
    head = ["method", "squared error vs naive (95% CI)", "Sharpe (95% CI)", "trades", "trainable", "train time",
            "verdict", "log score · CRPS (bp) · 90% coverage", "distribution vs garch · har-range"]
    body = []
    for _, row in table.reindex(columns=[*columns(), "key"]).iterrows():  # a run from before 0.2 lacks some
        name = html.escape(str(row["method"])) + ("" if table["strategy"].nunique() == 1
                                                  else f" <small>{html.escape(str(row['strategy']))}</small>")
        cells = [f'<a href="tearsheets/{html.escape(row["key"])}.html">{name}</a>',
                 _with_interval(row["mse_vs_naive"], row["mse_vs_naive_low"], row["mse_vs_naive_high"], _percent),
                 _with_interval(row["sharpe"], row["sharpe_ci_low"], row["sharpe_ci_high"], lambda v: f"{v:.2f}")
                 if row["trades"] > 0 else "–",  # a row that never traded has no Sharpe ratio
                 f"{int(row['trades']):,}", _count(row["trainable_params"]), _seconds(row["train_seconds"]),
                 html.escape(str(row["verdict"])), _scores(row),
                 html.escape("" if pd.isna(row["distribution_verdict"]) else str(row["distribution_verdict"]))]
        tds = "".join(f"<td{_words(h)}>{c}</td>" for h, c in zip(head, cells, strict=True))
        body.append(f'<tr class="{row["kind"]}">{tds}</tr>')
    header = "".join(f'<th{_words(h)} onclick="sortBy(this)">{h}</th>' for h in head)
    return (f'<div class="wide"><table id="summary"><thead><tr>{header}</tr></thead><tbody>{"".join(body)}</tbody>'
            '</table></div>')


def _words(head: str) -> str:
    """The class of the summary's columns of sentences, which wrap (the others stay on one line)."""
    return ' class="words"' if head in ("verdict", "distribution vs garch · har-range") else ""


def _scores(row: pd.Series) -> str:
    if pd.isna(row["log_score"]) and pd.isna(row["coverage_90"]):
        return "–"
    return f"{row['log_score']:.2f} · {row['crps']:.2f} · {row['coverage_90']:.0%}"


def loss_figure(losses: dict[str, list[float]], table: pd.DataFrame, styles: dict[str, dict] | None = None) -> Figure:
    """Training loss per step of every tuned method, with its validation loss at the end. The y axis leaves out the
    first steps (scratch starts far above the rest, see ``robust_limits``); the legend sits below the axes."""
    drawn = {name: curve for name, curve in losses.items() if curve}
    styles = _styles(drawn, styles)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    validation = table.drop_duplicates("method").set_index("method").get("val_loss", pd.Series(dtype=float))
    smoothed = {}
    for name, curve in drawn.items():
        mean = pd.Series(curve).rolling(5, min_periods=1).mean()
        smoothed[name] = mean.to_numpy()
        ax.plot(range(1, len(curve) + 1), mean, label=name, **styles[name])
        if name in validation and pd.notna(validation[name]):
            ax.plot([len(curve)], [validation[name]], "o", color=styles[name]["color"])
    ends = [[validation[name]] for name in drawn if name in validation and pd.notna(validation[name])]
    low, high = robust_limits([*smoothed.values(), *ends])
    ax.set_ylim(low, high)
    ax.set_title(above(smoothed, high), fontsize=8, loc="left")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (training, 5-step mean; dot: validation)")
    ax.grid(alpha=0.3)
    _legend_below(fig, len(drawn))
    return fig


def return_histogram(forecasts: dict[str, pd.DataFrame], threshold_bps: float | None,
                     styles: dict[str, dict] | None = None) -> Figure:
    """Forecast returns per method, in basis points, with the strategy's threshold: why a method rarely trades."""
    styles = _styles(forecasts, styles)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for name, frame in forecasts.items():
        edge = (frame["forecast"] / frame["close"] - 1) * 1e4
        if edge.abs().max() > 0:
            ax.hist(edge.clip(-10, 10), bins=80, histtype="step", label=name, **styles[name])
            drawn += 1
    if threshold_bps is not None:
        for side in (-threshold_bps, threshold_bps):
            ax.axvline(side, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("forecast return, basis points (clipped at ±10; dashed: the trading threshold)")
    ax.set_ylabel("bars (log scale)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _legend_below(fig, drawn)
    return fig


def pretraining_html(answer: dict | None, methods: pd.Series) -> str:
    if answer is None and methods.str.endswith("/scratch").any():
        return ("<p>This page combines runs: each run's own page answers the question for its rows.</p>")
    if answer is None:
        return ("<p>Add <code>scratch</code> to <code>--methods</code> to compare the pretrained base with the "
                "same model trained from random weights.</p>")
    rows = answer["rows"].reset_index().to_html(index=False, float_format=lambda v: f"{v:.4g}")
    tests = "".join(f"<li>{answer['best']} vs {c['rival']}: MSE ratio {c['mse_ratio']:.3f}, DM p-value "
                    f"{c['p_value']:.3g} (Holm {c['p_holm']:.3g})</li>" for c in answer["compared"])
    return f"<p><strong>{html.escape(answer['sentence'])}</strong></p><div class=\"wide\">{rows}</div><ul>{tests}</ul>"


def distributions_html(forecasts: dict[str, pd.DataFrame], styles: dict[str, dict] | None = None) -> str:
    """The calibration, volatility and fan-chart pictures, or nothing for forecasts without distributions."""
    if not _with_distribution(forecasts):
        return ""
    return render("distributions.html", calibration_png=_png(calibration_figure(forecasts, styles=styles)),
                  volatility_png=_png(volatility_figure(forecasts, styles=styles)),
                  fan_png=_png(fan_chart(forecasts, styles=styles)))


INPUTS_SHOWN = ["log_score", "crps", "coverage_90", "mse", "directional_accuracy", "sharpe"]


def inputs_html(table: pd.DataFrame) -> str:
    """Close against ohlc inputs, per method that has both, under the first strategy; nothing when none has both."""
    if "inputs" not in table:
        return ""
    rows = table[(table["kind"] == "llm") & (table["strategy"] == table["strategy"].iloc[0])].copy()
    rows["tuned"] = [m.removesuffix(f"-{i}") for m, i in zip(rows["method"], rows["inputs"], strict=True)]
    both = rows.groupby("tuned")["inputs"].transform("nunique") > 1
    if not both.any():
        return ""
    paired = rows[both].sort_values(["tuned", "inputs"], kind="stable")
    shown = paired[["tuned", "inputs", *(c for c in INPUTS_SHOWN if c in paired)]].rename(columns={"tuned": "method"})
    return ("<h2>Close against OHLC inputs</h2><p class=\"note\">Each method tuned twice on the same bars: reading "
            "closes only, and reading each bar's high–low range too. Higher log score, lower CRPS and coverage near "
            "0.9 mean a better distribution of the next close.</p><div class=\"wide\">"
            + shown.to_html(index=False, float_format=lambda v: f"{v:.4g}") + "</div>")


def volatility_html(volatility: pd.DataFrame | None, table: pd.DataFrame, target: str) -> str:
    """"Volatility that pays": each sigma's volatility-managed long position beside its distribution's log score
    and the Sharpe ratio of the row's own strategy; nothing for a run from before it existed."""
    if volatility is None or volatility.empty:
        return ""
    rows = table.drop_duplicates("method").set_index("method")
    own = [f"{rows.at[m, 'sharpe']:.2f}" if m in rows.index and rows.at[m, "trades"] > 0 else "–"
           for m in volatility["method"]]
    shown = pd.DataFrame({
        "method": volatility["method"],
        "log score": [_number(rows.at[m, "log_score"]) if m in rows.index else "–" for m in volatility["method"]],
        "ρ(sigma, |next return|)": volatility["spearman"].map(_number),
        "Sharpe, long sized by its sigma (95% CI)": [
            _with_interval(v, low, high, lambda x: f"{x:.2f}") for v, low, high in
            zip(volatility["sharpe"], volatility["sharpe_ci_low"], volatility["sharpe_ci_high"], strict=True)],
        "total return": volatility["total_return"].map(_percent),
        "max drawdown": volatility["max_drawdown"].map(_percent),
        "Sharpe of its own strategy": own})
    control = volatility.loc[volatility["spearman"].isna(), "method"]
    said = (f"{html.escape(str(control.iloc[0]))}'s sigma is constant: its row is the unmanaged control, a long "
            "position of one size." if len(control) else "")
    return render("volatility.html", target=html.escape(target or "target from the run's settings"), control=said,
                  table=shown.to_html(index=False, escape=False))


def _number(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}"


def folds_html(folds: pd.DataFrame | None) -> str:
    if folds is None:
        return ""
    shown = folds[["fold", "start", "end", "method", "kind", "mse", "relmae", "directional_accuracy", "sharpe",
                   "total_return", "trades"]]
    return ("<h2>Walk-forward folds</h2><p>The table above pools every fold's test bars; each fold's model was "
            "tuned on bars before the fold only.</p><div class=\"wide\">"
            + shown.to_html(index=False, float_format=lambda v: f"{v:.4g}") + "</div>")


def comparison_html(outputs: RunOutputs, side_by_side_note: str = "") -> str:
    """The comparison page: the answer first, a compact table, the full table collapsed, pictures, settings."""
    table, forecasts, losses = outputs.table, outputs.forecasts, outputs.losses
    untrained_methods = set(table.loc[pd.to_numeric(table["trainable_params"], errors="coerce") == 0, "method"])
    race = {name: trials for name, trials in (outputs.race or {}).items() if name not in untrained_methods}
    losses = {name: curve for name, curve in (losses or {}).items()
              if name not in untrained_methods and name.rsplit("/", 1)[-1] not in UNTRAINED}
    settings_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                            for k, v in outputs.settings.items())
    warns = "".join(f'<p class="warn">Warning: {html.escape(w)}</p>' for w in outputs.warnings)
    headline = "".join(f"<p>{html.escape(line)}</p>" for line in recommendation(table, outputs.reference))
    pictured = _distinct(forecasts)
    styles = page_styles(table, forecasts, losses, race, outputs.equities)
    losses_html = (f'<h2>Training and validation loss</h2><img src="{_png(loss_figure(losses, table, styles))}" '
                   'alt="loss curves">' if losses and any(losses.values()) else "")
    if trained(race):
        losses_html += race_html(outputs.race or {}, _png(race_figure(race, styles)), untrained_methods)
    return render("comparison.html", style=template("comparison.css"), script=template("sort.js"), warnings=warns,
                  context=context_line(outputs.settings), headline=headline, summary=summary_table(table),
                  metrics=metrics_table(table), folds=folds_html(outputs.folds), inputs=inputs_html(table),
                  pretraining=pretraining_html(pretraining_question(table, forecasts), table["method"]),
                  losses=losses_html, histogram_png=_png(return_histogram(pictured, outputs.threshold_bps, styles)),
                  equity=equity_html(outputs, styles),
                  forecast_png=_png(forecast_figure(pictured, styles=styles)),
                  cost_png=_png(cost_figure(table, styles)),
                  settings=settings_rows, distributions=distributions_html(pictured, styles),
                  volatility=volatility_html(outputs.volatility, table,
                                             str(outputs.settings.get("volatility that pays", ""))),
                  side_by_side=html.escape(side_by_side_note))


def equity_html(outputs: RunOutputs, styles: dict[str, dict]) -> str:
    """Every row's equity and drawdown against buy & hold: one figure, or one per strategy where a run has several
    (each method in its colour of the page's other charts)."""
    table = outputs.table
    if table["strategy"].nunique() == 1:
        figure = equity_figure({**outputs.equities, BENCHMARK: outputs.benchmark}, styles)
        return f'<img src="{_png(figure)}" alt="equity curves">'
    parts = []
    for strategy, rows in table.groupby("strategy", sort=False):
        curves = {str(row["method"]): outputs.equities[row["key"]] for _, row in rows.iterrows()}
        figure = equity_figure({**curves, BENCHMARK: outputs.benchmark}, styles)
        parts.append(f"<h3>{html.escape(str(strategy))}</h3>"
                     f'<img src="{_png(figure)}" alt="equity curves, {html.escape(str(strategy))}">')
    return "".join(parts)


def page_styles(table: pd.DataFrame, *named: dict) -> dict[str, dict]:
    """One colour and line style per method (and per row key, where a run has several strategies), the same in
    every chart of the page; buy & hold is black and dashed."""
    names = {*table["method"].astype(str), *table.get("key", pd.Series(dtype=str)).astype(str)}
    names |= {str(name) for mapping in named for name in mapping}
    return series_styles(names - {BENCHMARK})


def context_line(settings: dict) -> str:
    """The line under the headline: the data and the strategies the page is about (a combined page names each
    run's)."""
    def values(key: str) -> list[str]:
        found = [str(v) for k, v in settings.items() if k == key or str(k).endswith(f": {key}")]
        return list(dict.fromkeys(v.strip() for v in found if v))
    data, strategies = values("data"), values("strategies")
    parts = ([f"Data: {'; '.join(data)}"] if data else []) + ([f"strategies: {'; '.join(strategies)}"]
                                                               if strategies else [])
    return f'<p id="context">{html.escape(" · ".join(parts))}</p>' if parts else ""


def _distinct(forecasts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The forecasts to draw: one panel per distinct set (two runs of the same model draw it once)."""
    kept: dict[str, pd.DataFrame] = {}
    for name, frame in forecasts.items():
        if not any(frame.shape == other.shape and frame.equals(other) for other in kept.values()):
            kept[name] = frame
    return kept


SIDE_BY_SIDE = "all.html"  # the side-by-side tearsheet page, in tearsheets/


def side_by_side_rows(outputs: RunOutputs, strategy: str) -> pd.DataFrame:
    """One strategy's rows of the side-by-side page, tuned methods first, then the baselines and buy & hold.

    Sharpe, total return, max drawdown, trades, commission and swap are ``comparison.csv``'s own; the
    volatility and the day figures come from the same trading-period returns as its Sharpe ratio.
    """
    table = outputs.table[outputs.table["strategy"] == strategy]
    ordered = pd.concat([table[table["kind"] == "llm"], table[table["kind"] != "llm"]])
    rows = [{**_period_figures(outputs.equities[row["key"]], outputs.calendar, traded=row["trades"] > 0),
             "key": row["key"], "method": row["method"], "kind": row["kind"], "sharpe": row["sharpe"],
             "total_return": row["total_return"], "max_drawdown": row["max_drawdown"], "trades": row["trades"],
             "commission": row["commission"], "swap": row["swap"]} for _, row in ordered.iterrows()]
    held = trading_performance(outputs.benchmark, outputs.calendar)
    rows.append({**_period_figures(outputs.benchmark, outputs.calendar), **held, "key": "", "method": BENCHMARK,
                 "kind": "benchmark", "trades": 1, "commission": float("nan"), "swap": float("nan")})
    return pd.DataFrame(rows)


def _period_figures(equity: pd.Series, calendar: Calendar, traded: bool = True) -> dict[str, float]:
    """Annualised volatility, the share of trading periods that gained and the best and worst period."""
    returns = period_returns(equity, calendar)
    if not traded or returns.std() == 0:
        return dict.fromkeys(("volatility", "periods_up", "best_day", "worst_day"), float("nan"))
    moved = returns[returns != 0]
    return {"volatility": float(returns.std() * np.sqrt(calendar.periods_per_year)),
            "periods_up": float((moved > 0).mean()), "best_day": float(returns.max()),
            "worst_day": float(returns.min())}


SIDE_BY_SIDE_COLUMNS = {  # column of side_by_side_rows: (header, format)
    "sharpe": ("Sharpe", lambda v: f"{v:.2f}"), "total_return": ("total return", lambda v: f"{v:+.2%}"),
    "max_drawdown": ("max drawdown", lambda v: f"{v:.2%}"), "trades": ("trades", lambda v: f"{v:,.0f}"),
    "volatility": ("volatility (a year)", lambda v: f"{v:.2%}"), "periods_up": ("days up", lambda v: f"{v:.0%}"),
    "best_day": ("best day", lambda v: f"{v:+.2%}"), "worst_day": ("worst day", lambda v: f"{v:+.2%}"),
    "commission": ("commission", lambda v: f"{v:,.0f}"), "swap": ("swap", lambda v: f"{v:+,.0f}")}


def side_by_side_table(rows: pd.DataFrame) -> str:
    """The figures of ``side_by_side_rows`` as an HTML table; a row that never traded shows "–" for its Sharpe
    and day figures, as the comparison page does."""
    head = "".join(f"<th>{html.escape(header)}</th>" for header, _ in SIDE_BY_SIDE_COLUMNS.values())
    body = []
    for _, row in rows.iterrows():
        name = html.escape(str(row["method"]))
        if row["key"]:
            name = f'<a href="{html.escape(str(row["key"]))}.html">{name}</a>'
        cells = "".join(f'<td class="{column}">{_shown(row[column], show, column, row["trades"])}</td>'
                        for column, (_, show) in SIDE_BY_SIDE_COLUMNS.items())
        body.append(f'<tr class="{row["kind"]}" data-key="{html.escape(str(row["key"]))}"><td>{name}</td>{cells}</tr>')
    return (f'<div class="wide"><table class="side"><thead><tr><th>method</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _shown(value: float, show, column: str, trades: float) -> str:
    if pd.isna(value) or (column == "sharpe" and not trades > 0):  # a row that never traded has no Sharpe ratio
        return "–"
    return show(value)


def monthly_table(rows: pd.DataFrame, outputs: RunOutputs) -> str:
    """Monthly returns of the tuned methods of ``rows`` (``side_by_side_rows``) and buy & hold."""
    curves = {row["method"]: outputs.equities[row["key"]] if row["key"] else outputs.benchmark
              for _, row in rows.iterrows() if row["kind"] != "baseline"}
    return _monthly_html(curves, outputs.calendar)


def side_by_side_html(outputs: RunOutputs) -> str:
    """The tearsheets of every row side by side: per strategy a table of comparison.csv's figures, equity and
    drawdown of the tuned methods against buy & hold, and their monthly returns."""
    table = outputs.table
    styles = series_styles(table["method"].astype(str))  # a method looks alike under every strategy
    sections = []
    for strategy in table["strategy"].drop_duplicates():
        rows = side_by_side_rows(outputs, strategy)
        drawn = {row["method"]: outputs.equities[row["key"]] for _, row in rows.iterrows() if row["kind"] == "llm"}
        figure = equity_figure({**drawn, BENCHMARK: outputs.benchmark}, styles)
        sections.append(f'<section class="strategy"><h2>{html.escape(str(strategy))}</h2>{side_by_side_table(rows)}'
                        f'<img src="{_png(figure)}" alt="equity and drawdown, {html.escape(str(strategy))}">'
                        f"<h3>Monthly returns</h3>{monthly_table(rows, outputs)}</section>")
    first, last = outputs.benchmark.index[0], outputs.benchmark.index[-1]
    period = f"test bars {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M}"
    return render("side_by_side.html", style=template("comparison.css"), context=context_line(outputs.settings),
                  period=html.escape(period), sections="".join(sections),
                  days=html.escape("each bar" if outputs.calendar.per_bar else
                                   f"trading days ending {outputs.calendar.day_end} {outputs.calendar.timezone}"),
                  periods_per_year=str(outputs.calendar.periods_per_year))


def _side_by_side_note(table: pd.DataFrame) -> str:
    """The comparison page's words beside its link to the side-by-side page."""
    tuned = table.loc[table["kind"] == "llm", "method"].nunique()
    strategies = table["strategy"].nunique()
    never = table.loc[(table["kind"] == "llm") & (table["trades"] == 0), "key"]
    return (f"{tuned} tuned methods and the baselines under {strategies} "
            f"{'strategy' if strategies == 1 else 'strategies'}"
            + (f"; never traded: {', '.join(never)}" if len(never) else "; every tuned method traded"))


def write_report(out: Path, outputs: RunOutputs) -> None:
    """Tearsheets (one per row of the table, keyed by its ``key`` column, and all side by side) and the page."""
    table, equities, benchmark, calendar = outputs.table, outputs.equities, outputs.benchmark, outputs.calendar
    for key, row in table.set_index("key").iterrows():
        tearsheet(equities[key], benchmark, f"{row['method']} ({row['strategy']})", out / "tearsheets" / f"{key}.html",
                  calendar, row)
    write_atomic(out / "tearsheets" / SIDE_BY_SIDE, side_by_side_html(outputs))
    write_atomic(out / "comparison.html", comparison_html(outputs, _side_by_side_note(table)))
