import numpy as np
import pytest

from llmsignal.finetune.base import embedded_tokenizer
from llmsignal.finetune.codec import BINS, ZERO_BIN, PriceCodec, TokenTable


def test_encode_decode_round_trip():
    bins = np.array([0, 7, 50, 93, 99])
    text = PriceCodec.encode(bins)
    assert text == " 0 0 , 0 7 , 5 0 , 9 3 , 9 9 ,"
    np.testing.assert_array_equal(PriceCodec.decode(text), bins)


def test_bins_follow_returns_and_clip():
    codec = PriceCodec(step=0.001)
    bins = codec.to_bins([1.0, 1.0, 1.0 * np.exp(0.003), 1.0 * np.exp(0.003 - 1.0)])
    np.testing.assert_array_equal(bins, [ZERO_BIN, ZERO_BIN + 3, 0])
    assert codec.bin_returns()[ZERO_BIN + 3] == pytest.approx(0.003)


def test_fit_puts_most_returns_inside_the_range():
    closes = 1.1 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-3, 5000)))
    bins = PriceCodec.fit(closes).to_bins(closes)
    assert np.mean((bins > 0) & (bins < BINS - 1)) > 0.99
    assert bins.std() > 5  # the scale resolves typical moves into several bins


def test_fit_refuses_constant_prices():
    with pytest.raises(ValueError, match="never move"):
        PriceCodec.fit(np.ones(100))


def test_token_table_matches_the_tokenizer():
    tokenizer = embedded_tokenizer()
    table = TokenTable(tokenizer)
    bins = np.array([3, 50, 98, 12])
    expected = tokenizer.encode(PriceCodec.encode(bins), add_special_tokens=False)
    assert table.ids(bins).tolist() == expected


def _bars(n: int = 400, seed: int = 0):
    from benchmarks.synthetic import loaded_bars

    return loaded_bars(n, seed)


def test_ohlc_text_writes_each_bars_return_then_its_range():
    codec = PriceCodec(step=0.001, inputs="ohlc", range_step=0.001)
    closes, high, low = [1.0, np.exp(0.002), 1.0], [1.0, np.exp(0.005), np.exp(0.002)], [1.0, 1.0, np.exp(-0.001)]
    bins = codec.bar_bins(closes, high, low)
    np.testing.assert_array_equal(bins, [[ZERO_BIN + 2, 5], [ZERO_BIN - 2, 3]])  # row i: bar i + 1 alone
    assert PriceCodec.encode(bins) == " 5 2 0 5 , 4 8 0 3 ,"
    tokenizer = embedded_tokenizer()
    assert TokenTable(tokenizer, fields=2).ids(bins).tolist() == tokenizer.encode(PriceCodec.encode(bins),
                                                                                   add_special_tokens=False)
    with pytest.raises(ValueError, match="high and low"):
        codec.bar_bins(closes)


def test_range_bins_are_fitted_on_the_training_split_only():
    from llmsignal.finetune.bars import split_bars
    from llmsignal.models.entries import fit_codec

    bars = _bars()
    split = split_bars(bars, context=16)
    codec = fit_codec(split, "ohlc", 16, "bars")
    changed = bars.copy()
    later = changed.index[split.val_start:]  # validation and test bars: ranges ten times as wide
    changed.loc[later, "high"] = changed.loc[later, ["open", "close"]].max(axis=1) * 1.01
    changed.loc[later, "low"] = changed.loc[later, ["open", "close"]].min(axis=1) / 1.01
    assert fit_codec(split_bars(changed, context=16), "ohlc", 16, "bars") == codec
    wider_training = bars.copy()
    wider_training["high"] *= 1.01
    assert fit_codec(split_bars(wider_training, context=16), "ohlc", 16, "bars").range_step > codec.range_step
    train_ranges = np.log(split.train["high"] / split.train["low"])
    assert np.quantile(train_ranges, 0.99) / codec.range_step == pytest.approx(90)  # 99% of them below bin 90


def test_ohlc_inputs_refuse_bars_without_ranges_or_with_broken_ones():
    from llmsignal.finetune.bars import DataError, check_ranges

    bars = _bars()
    flat = bars.assign(open=bars["close"], high=bars["close"], low=bars["close"])
    with pytest.raises(DataError, match="close-only data carries no ranges; use --inputs close"):
        check_ranges(flat, "flat.csv")
    broken = bars.copy()
    broken.iloc[7, broken.columns.get_loc("low")] = broken["close"].iloc[7] * 1.001
    with pytest.raises(DataError, match=rf"broken.csv: bar {broken.index[7]} has its low .* above its (open|close)"):
        check_ranges(broken, "broken.csv")
    check_ranges(bars, "fine.csv")


def test_a_close_codec_is_saved_as_it_always_was():
    assert PriceCodec(step=0.001, context=48).to_dict() == {"step": 0.001, "context": 48}
    assert PriceCodec(**PriceCodec(0.001, 16, "ohlc", 0.002).to_dict()) == PriceCodec(0.001, 16, "ohlc", 0.002)
