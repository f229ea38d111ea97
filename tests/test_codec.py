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
