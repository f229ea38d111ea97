"""Synthetic hourly bars for the benchmarks and the tests: a random walk, the same for the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsignal.finetune.bars import check_bars


def synthetic_bars(n: int = 600, seed: int = 1, start: str = "2020-01-01") -> pd.DataFrame:
    """``n`` hourly bars of a geometric random walk (0.1% an hour), as a CSV file holds them: a ``Date`` index and
    ``Open, High, Low, Close, Volume`` columns; ``.to_csv(path)`` writes a file ``llmsignal --data`` reads."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range(start, periods=n, freq="h", name="Date")
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.0005,
                         "Low": np.minimum(open_, close) * 0.9995, "Close": close,
                         "Volume": rng.integers(100, 1000, n)}, index=index)


def loaded_bars(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """The same bars as ``llmsignal.data.load_bars`` gives them from that file: checked, lower-case columns."""
    return check_bars(synthetic_bars(n, seed).rename(columns=str.lower), "synthetic bars")
