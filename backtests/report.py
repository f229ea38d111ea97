"""Tearsheets and the comparison report: forecast error, P&L and cost side by side."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # backtrader's own plot() forces TkAgg; figures here are drawn headless
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from backtests.metrics import daily_returns  # noqa: E402

COLUMNS = ["method", "kind", "mse", "mae", "mase", "directional_accuracy", "sharpe", "total_return",
           "max_drawdown", "trades", "trainable_params", "train_seconds", "peak_memory_mb", "saved_mb",
           "predict_ms_per_bar"]


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


def tearsheet(equity: pd.Series, benchmark: pd.Series, title: str, path: Path) -> None:
    """A quantstats HTML tearsheet of daily returns with buy-and-hold as benchmark."""
    import quantstats as qs

    returns, bench = daily_returns(equity), daily_returns(benchmark)
    returns.name, bench.name = title, "buy & hold"
    path.parent.mkdir(parents=True, exist_ok=True)
    if returns.std() == 0:  # quantstats cannot regress a flat curve on the benchmark
        path.write_text(f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                        "<p>The strategy never held a position on these forecasts: no tearsheet.</p>")
        return
    with quiet():
        qs.reports.html(returns.tz_localize(None), benchmark=bench.tz_localize(None), output=str(path),
                        title=title, download_filename=path.name)
        plt.close("all")


def equity_figure(curves: dict[str, pd.Series]) -> str:
    """All equity curves (rebased to 1) in one PNG, as a base64 data URI."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, equity in curves.items():
        style = "--" if name == "buy & hold" else "-"
        ax.plot(equity.index, equity / equity.iloc[0], style, label=name, linewidth=1.2)
    ax.set_ylabel("equity (start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, fontsize=8)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def comparison_html(table: pd.DataFrame, curves: dict[str, pd.Series], settings: dict, warnings_: list[str]) -> str:
    """One self-contained page: the comparison table, the equity curves and the run's settings."""
    formatted = table.copy()
    for column in formatted.columns:
        if pd.api.types.is_float_dtype(formatted[column]):
            formatted[column] = formatted[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    links = {m: f'<a href="tearsheets/{m}.html">{m}</a>' for m in table["method"]}
    formatted["method"] = formatted["method"].map(lambda m: links.get(m, m))
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in settings.items())
    alerts = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings_)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>llmsignal comparison</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}.warn{{color:#a00;font-weight:bold}}</style></head>
<body><h1>llmsignal: tuning methods compared</h1>{alerts}
<p>Forecast error is on next-close forecasts over the test bars; MASE below 1 beats the naive last-value
forecast. P&amp;L is the strategy trading each forecast with the costs below. Rows of kind
<em>baseline</em> are not language models.</p>
{formatted.to_html(index=False, escape=False)}
<h2>Equity curves</h2><img src="{equity_figure(curves)}" alt="equity curves">
<h2>Settings</h2><table>{rows}</table></body></html>"""
