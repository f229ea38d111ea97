import copy
import hashlib
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from llmsignal.finetune.base import load_base
from llmsignal.finetune.codec import PriceCodec
from llmsignal.finetune.methods import make_method
from llmsignal.finetune.train import TrainConfig
from llmsignal.models.distribution import BIN_COLUMNS
from llmsignal.models.entries import frame_fingerprint, train_entry
from llmsignal.models.predictor import PredictionError, Predictor, cached_predictions
from llmsignal.models.registry import Registry
from tests.conftest import TINY_CONTEXT, synthetic_bars, tiny_entries

CONTEXT = TINY_CONTEXT


@pytest.fixture(scope="module")
def setup(tiny_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pred")
    entries, split, _ = tiny_entries(folder, tiny_base, ("lora", "prefix"))
    return split, Registry(folder / "reg"), entries


def test_distribution_is_exact_and_sums_to_one(setup):
    split, _, entries = setup
    predictor = Predictor.from_entry(entries["lora"])
    assert predictor.use_tree
    contexts = np.random.default_rng(3).integers(30, 70, size=(5, CONTEXT))
    fast = predictor.distribution(contexts)
    predictor.use_tree = False
    slow = predictor.distribution(contexts)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.sum(1), torch.ones(5, dtype=fast.dtype))


def test_prefix_tuning_falls_back_to_the_exact_path(setup):
    _, _, entries = setup
    predictor = Predictor.from_entry(entries["prefix"])
    assert not predictor.use_tree  # the prefix's own attention is outside the candidate mask
    contexts = np.random.default_rng(4).integers(30, 70, size=(3, CONTEXT))
    torch.testing.assert_close(predictor.distribution(contexts), predictor._expanded_distribution(contexts),
                               atol=0, rtol=0)
    predictor.use_tree = True  # what the fallback avoids: the tree pass fails, or is wrong, for prefix tuning
    try:
        tree = predictor.distribution(contexts)
    except RuntimeError:  # peft's prefix tuning cannot take the candidates' 4-D attention mask at all
        tree = None
    assert tree is None or not torch.allclose(tree, predictor._expanded_distribution(contexts), atol=1e-6)


def test_no_look_ahead(setup):
    """Changing every bar after t leaves the forecasts for bars up to t exactly as they were."""
    split, _, entries = setup
    _assert_no_look_ahead(Predictor.from_entry(entries["lora"]), split, t=split.test_start + 40)


def _assert_no_look_ahead(predictor: Predictor, split, t: int) -> None:
    bars = split.bars
    before = predictor.predict(bars, split.test_start, progress=False)
    changed = bars.copy()
    changed.iloc[t + 1:, changed.columns.get_loc("close")] *= np.exp(
        np.random.default_rng(9).normal(0, 0.01, len(bars) - t - 1))
    after = predictor.predict(changed, split.test_start, progress=False)
    pd.testing.assert_frame_equal(before.loc[:bars.index[t]], after.loc[:bars.index[t]])
    assert not np.allclose(before["forecast"].iloc[-50:], after["forecast"].iloc[-50:])


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_shared_windows_give_each_bar_exactly_its_shorter_context(setup, method):
    """With k forecasts per pass, bar t's forecast is the exact one from its own context - k + 1 + t % k returns."""
    split, _, entries = setup
    closes = split.bars["close"].to_numpy()
    ends = np.arange(split.test_start + 3, len(closes))  # starts mid-group and ends in a cut-short group
    shared = Predictor.from_entry(entries[method], forecasts_per_pass=7, batch_size=4)
    forecast, p_up = shared.forecast(closes, ends)
    lengths = shared.context_lengths(ends)
    assert set(lengths) == set(range(CONTEXT - 6, CONTEXT + 1)) and len(closes) % 7 != 0
    for length in (CONTEXT - 6, CONTEXT - 1):
        exact = Predictor.from_entry(entries[method])
        exact.codec = replace(exact.codec, context=int(length))
        rows = lengths == length
        expected_forecast, expected_up = exact.forecast(closes, ends[rows])
        np.testing.assert_allclose(forecast[rows], expected_forecast, rtol=1e-9)
        np.testing.assert_allclose(p_up[rows], expected_up, atol=1e-6)


def test_shared_windows_do_not_look_ahead(setup):
    """Bars after t share t's window, yet changing them leaves every forecast up to t as it was."""
    split, _, entries = setup
    t = (split.test_start // 8 + 5) * 8 + 2  # inside a group, with six bars of its window after it
    _assert_no_look_ahead(Predictor.from_entry(entries["lora"], forecasts_per_pass=8), split, t)


def test_a_bars_forecast_does_not_depend_on_where_prediction_starts(setup):
    split, _, entries = setup
    predictor = Predictor.from_entry(entries["lora"], forecasts_per_pass=6)
    whole = predictor.predict(split.bars, split.test_start, progress=False)
    later = predictor.predict(split.bars, split.test_start + 7, progress=False)
    pd.testing.assert_frame_equal(whole.iloc[7:], later)


def test_bfloat16_stays_close_to_float32(setup):
    split, _, entries = setup
    exact = Predictor.from_entry(entries["lora"]).predict(split.bars, split.test_start, progress=False)
    asked = Predictor.from_entry(entries["lora"], precision="bfloat16")
    fast = asked.predict(split.bars, split.test_start, progress=False)
    gap_bps = np.abs(np.log(fast["forecast"] / exact["forecast"])) * 1e4
    if not asked.number_format.bfloat16:  # a CPU without native bfloat16 runs float32: the same numbers
        assert gap_bps.max() == 0 and asked.number_format.name == "float32"
        return
    assert 0 < gap_bps.max() < 1  # not the same computation, yet well under a basis point
    assert (fast["p_up"] - exact["p_up"]).abs().max() < 0.02


def test_repeated_and_unsorted_bars_get_their_own_forecasts(setup):
    split, _, entries = setup
    predictor = Predictor.from_entry(entries["lora"], forecasts_per_pass=4)
    closes = split.bars["close"].to_numpy()
    bars = np.array([50, 51, 50, 49, 60])
    forecast, p_up = predictor.forecast(closes, bars)
    one_by_one = [predictor.forecast(closes, np.array([t])) for t in bars]
    np.testing.assert_allclose(forecast, [f[0] for f, _ in one_by_one], rtol=1e-12)
    np.testing.assert_allclose(p_up, [u[0] for _, u in one_by_one], rtol=1e-12)
    with pytest.raises(PredictionError, match="past the last"):
        predictor.forecast(closes, np.array([len(closes)]))


class ShortPassesOnly(torch.nn.Module):
    """A model that, like some attention implementations, cannot take a pass longer than its positions."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, input_ids: torch.Tensor, **inputs):
        if input_ids.shape[1] > self.config.n_positions:
            raise RuntimeError(f"{input_ids.shape[1]} tokens are more than {self.config.n_positions} positions")
        return self.model(input_ids=input_ids, **inputs)


def test_a_pass_too_long_for_the_model_falls_back_to_exact_passes(tiny_base):
    """A model that cannot take a shared window's long pass (beyond n_positions, 192 here) goes bar by bar."""
    base = load_base(tiny_base)
    codec = PriceCodec(step=2e-4, context=CONTEXT)
    closes = synthetic_bars(120)["Close"].to_numpy()
    bars = np.arange(CONTEXT, 120)
    fast = Predictor(base.model, base.tokenizer, codec, forecasts_per_pass=16)
    short = Predictor(ShortPassesOnly(copy.deepcopy(base.model)), base.tokenizer, codec, forecasts_per_pass=16)
    assert fast.use_tree and not short.use_tree  # 48 prompt + 160 candidate tokens > 192 positions
    for got, expected in zip(short.forecast(closes, bars), fast.forecast(closes, bars), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("options, message", [({"forecasts_per_pass": 0}, "between 1 and the context"),
                                              ({"forecasts_per_pass": CONTEXT + 1}, "between 1 and the context"),
                                              ({"precision": "float16"}, "unknown precision")])
def test_bad_prediction_options_are_refused(setup, options, message):
    with pytest.raises(ValueError, match=message):
        Predictor.from_entry(setup[2]["lora"], **options)


def test_forecast_needs_a_full_context(setup):
    split, _, entries = setup
    with pytest.raises(ValueError, match="needs 17 closes"):
        Predictor.from_entry(entries["lora"]).forecast(split.bars["close"].to_numpy(), np.array([5]))


def test_predictions_are_cached_by_entry_and_data(setup, tmp_path):
    split, _, entries = setup
    first, _ = cached_predictions(entries["lora"], split.bars, split.test_start, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    second, _ = cached_predictions(entries["lora"], split.bars, split.test_start, tmp_path)
    pd.testing.assert_frame_equal(first, second, check_freq=False)
    other = split.bars.copy()
    other["close"] *= 1.01
    cached_predictions(entries["lora"], other, split.test_start, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_cache_from_before_the_distributions_is_never_read(setup, tmp_path):
    split, _, entries = setup
    entry = entries["lora"]
    stale = tmp_path / f"{entry.name}-{entry.version}-{frame_fingerprint(split.bars)}-{split.test_start}.csv"
    test = split.bars.iloc[split.test_start:]
    pd.DataFrame({"close": test["close"], "forecast": 1.0, "p_up": 0.5, "ms_per_bar": 1.0}).to_csv(stale)
    frame, _ = cached_predictions(entry, split.bars, split.test_start, tmp_path)
    assert {"sigma", "q05", "q95", "bin_step", "bin50"} <= set(frame.columns) and (frame["forecast"] != 1.0).all()


def test_the_forecast_frame_summarises_the_exact_bins(setup):
    split, _, entries = setup
    predictor = Predictor.from_entry(entries["lora"])
    frame = predictor.predict(split.bars, split.test_start, progress=False)
    probs = frame[BIN_COLUMNS].to_numpy()
    t = split.test_start + 3
    window = predictor.codec.to_bins(split.bars["close"].to_numpy()[t - CONTEXT:t + 1])
    np.testing.assert_allclose(probs[3], predictor.distribution(window[None])[0].numpy(), atol=1e-12)
    returns = predictor.codec.bin_returns()
    mean = probs @ returns
    within = predictor.codec.step**2 / 12  # each bin's mass spread across its width, as the scores read it
    np.testing.assert_allclose(frame["sigma"], np.sqrt(probs @ returns**2 - mean**2 + within), rtol=1e-9)
    np.testing.assert_allclose(frame["forecast"], frame["close"] * np.exp(mean), rtol=1e-12)
    quantiles = frame[["q05", "q25", "q50", "q75", "q95"]].to_numpy()
    assert (np.diff(quantiles, axis=1) > 0).all() and (frame["bin_step"] == predictor.codec.step).all()
    # q05 and q95 hold 5% of the mass beyond them, bins spread across their width
    below = np.log(frame["q05"] / frame["close"]).to_numpy() / predictor.codec.step + 50.5
    whole = np.floor(below).astype(int)
    mass = np.array([p[:w].sum() + p[w] * (b - w) for p, w, b in zip(probs, whole, below, strict=True)])
    np.testing.assert_allclose(mass, 0.05, atol=1e-9)


def test_entry_is_not_retrained_for_the_same_request(setup, tiny_base):
    split, registry, entries = setup
    again, trained = train_entry(split, load_base(tiny_base), make_method("lora"), registry, "t-lora",
                                 TrainConfig(steps=3, batch_size=4, window=CONTEXT + 1), "x", CONTEXT)
    assert not trained and again.ref == entries["lora"].ref
    forced, trained = train_entry(split, load_base(tiny_base), make_method("lora"), registry, "t-lora",
                                  TrainConfig(steps=3, batch_size=4, window=CONTEXT + 1), "x", CONTEXT, force=True)
    assert trained and forced.version == entries["lora"].version + 1


@pytest.fixture(scope="module")
def ohlc(tiny_base, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pred-ohlc")
    entries, split, _ = tiny_entries(folder, tiny_base, ("lora",), prefix="o", inputs="ohlc")
    return split, entries["lora"]


def _ranges(bars: pd.DataFrame) -> dict:
    return {"high": bars["high"].to_numpy(), "low": bars["low"].to_numpy()}


def test_an_ohlc_entry_reads_ranges_without_looking_ahead(ohlc):
    """Widening bar t+1's range (high and low) changes the forecasts from t+1 on and none up to t."""
    split, entry = ohlc
    predictor = Predictor.from_entry(entry)
    assert entry.metadata["inputs"] == "ohlc" and predictor.use_tree
    bars, t = split.bars, split.test_start + 20
    before = predictor.predict(bars, split.test_start, progress=False)
    wider = bars.copy()
    wider.iloc[t + 1, wider.columns.get_loc("high")] *= 1.02
    wider.iloc[t + 1, wider.columns.get_loc("low")] /= 1.02
    after = predictor.predict(wider, split.test_start, progress=False)
    pd.testing.assert_frame_equal(before.loc[:bars.index[t]], after.loc[:bars.index[t]])
    assert not np.allclose(before.loc[bars.index[t + 1]].to_numpy(), after.loc[bars.index[t + 1]].to_numpy())


def test_an_ohlc_prompt_ends_where_the_next_return_starts(ohlc):
    """Tree and shared-window paths score the same 100 bins as ten plain passes over the ohlc text."""
    split, entry = ohlc
    closes, ranges = split.bars["close"].to_numpy(), _ranges(split.bars)
    ends = np.arange(split.test_start + 3, split.test_start + 40)
    exact = Predictor.from_entry(entry)
    exact.use_tree = False
    expected = exact.probabilities(closes, ends, **ranges)
    np.testing.assert_allclose(Predictor.from_entry(entry).probabilities(closes, ends, **ranges), expected, atol=1e-6)
    shared = Predictor.from_entry(entry, forecasts_per_pass=5)
    lengths = shared.context_lengths(ends)
    full = lengths == CONTEXT
    np.testing.assert_allclose(shared.probabilities(closes, ends, **ranges)[full], expected[full], atol=1e-6)
    assert (~full).any()  # the others read shorter contexts, checked for closes above


def test_an_ohlc_entry_given_closes_only_says_what_is_missing(ohlc):
    split, entry = ohlc
    with pytest.raises(PredictionError, match="high and low"):
        Predictor.from_entry(entry).forecast(split.bars["close"].to_numpy(), np.array([split.test_start]))


def test_a_close_entry_reads_the_text_it_always_read(setup):
    """A close entry's codec, request key and prompt are what they were before ohlc inputs existed, so saved entries
    are found again (not retrained) and forecast the same."""
    split, _, entries = setup
    entry = entries["lora"]
    assert entry.metadata["codec"] == {"step": entry.metadata["codec"]["step"], "context": CONTEXT}
    base = load_base(entry.metadata["base"])
    config = TrainConfig(**entry.metadata["train_config"])
    old = {"data": frame_fingerprint(split.bars), "val_start": split.val_start, "test_start": split.test_start,
           "base": base.fingerprint, "method": "lora", "params": make_method("lora").params,
           "lr": make_method("lora").lr, "train": config.to_dict(), "context": CONTEXT}
    assert entry.metadata["request_key"] == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    predictor = Predictor.from_entry(entry)
    bins = predictor.codec.bar_bins(split.bars["close"].to_numpy()[:CONTEXT + 1])
    text = "".join(f" {b // 10} {b % 10} ," for b in bins)  # the LLMTime text, written out here
    assert predictor.table.ids(bins).tolist() == base.tokenizer.encode(text, add_special_tokens=False)
