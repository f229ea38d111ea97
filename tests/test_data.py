import pandas as pd
import pytest

from llmsignal.data import load_bars
from llmsignal.finetune.bars import DataError, split_bars
from tests.conftest import synthetic_bars


def test_bundled_eurusd_loads_from_the_backtesting_package():
    bars = load_bars()
    assert len(bars) == 5000
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert bars.index.is_monotonic_increasing and bars.index[0] == pd.Timestamp("2017-04-19 09:00")


def test_metatrader5_export_loads_as_it_comes(tmp_path):
    bars = synthetic_bars(300)
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for stamp, row in bars.iterrows():
        lines.append(f"{stamp:%Y.%m.%d}\t{stamp:%H:%M:%S}\t{row.Open:.5f}\t{row.High:.5f}\t{row.Low:.5f}\t"
                     f"{row.Close:.5f}\t{row.Volume}\t0\t7")
    path = tmp_path / "EURUSD_H1.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-16")  # MT5 writes UTF-16 by default
    loaded = load_bars(path)
    assert len(loaded) == 300
    assert loaded.index[1] == bars.index[1]
    assert loaded["close"].iloc[-1] == pytest.approx(bars["Close"].iloc[-1], abs=1e-5)
    assert loaded["volume"].iloc[0] == bars["Volume"].iloc[0]


def _write(tmp_path, frame):
    path = tmp_path / "bad.csv"
    frame.to_csv(path)
    return path


@pytest.mark.parametrize("corrupt, message", [
    (lambda f: f.assign(Close=f["Close"].where(f.index != f.index[10])), "NaN"),
    (lambda f: f.iloc[[*range(20), 25, 21, 22, 23, 24, *range(26, len(f))]], "not sorted"),
    (lambda f: pd.concat([f.iloc[:30], f.iloc[29:]]), "duplicate timestamp"),
    (lambda f: f.assign(Low=f["Low"].where(f.index != f.index[5], -1.0)), "non-positive"),
    (lambda f: f.iloc[:50], "only 50 bars"),
    (lambda f: f.drop(columns="Close"), "missing column"),
])
def test_bad_bars_name_the_problem_and_the_file(tmp_path, corrupt, message):
    path = _write(tmp_path, corrupt(synthetic_bars(300)))
    with pytest.raises(DataError, match=message) as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_malformed_csv(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_text("just some text\nwith no columns\n")
    with pytest.raises(DataError, match="garbage.csv"):
        load_bars(path)


def test_split_is_chronological():
    bars = load_bars()
    split = split_bars(bars, test=0.2, val=0.1)
    assert len(split.test) == 1000
    assert split.train.index[-1] < split.val.index[0] < split.val.index[-1] < split.test.index[0]


@pytest.mark.parametrize("rolling", [False, True])
def test_walk_forward_folds_train_only_on_earlier_bars(rolling):
    from llmsignal.finetune.bars import walk_forward_splits

    bars = load_bars()
    splits = walk_forward_splits(bars, 4, test=0.2, val=0.1, rolling=rolling)
    tests = pd.concat([s.test for s in splits])
    assert tests.index.equals(bars.index[4000:])  # the folds tile the last 20% exactly once
    for split in splits:
        assert split.train.index[-1] < split.val.index[0] <= split.val.index[-1] < split.test.index[0]
        assert len(split.test) == 250
    sizes = [len(s.train) + len(s.val) for s in splits]
    assert (len(set(sizes)) == 1) if rolling else (sizes == sorted(sizes) and sizes[0] < sizes[-1])
