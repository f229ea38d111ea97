import numpy as np
import pandas as pd
import pytest
import torch

from backtests.training import train_entry
from finetune.base import load_base
from finetune.methods import make_method
from finetune.train import TrainConfig
from models.predictor import Predictor, cached_predictions
from models.registry import Registry
from tests.conftest import TINY_CONTEXT, tiny_entries

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
    contexts = np.random.default_rng(4).integers(30, 70, size=(3, CONTEXT))
    probs = predictor.distribution(contexts)
    predictor.use_tree = not predictor.use_tree
    other = predictor.distribution(contexts)
    if not predictor.use_tree:  # it chose the tree: then the tree must agree with the exact path
        torch.testing.assert_close(probs, other, atol=1e-6, rtol=0)


def test_no_look_ahead(setup):
    """Changing every bar after t leaves the forecasts for bars up to t exactly as they were."""
    split, _, entries = setup
    predictor = Predictor.from_entry(entries["lora"])
    bars = split.bars
    t = split.test_start + 40
    before = predictor.predict(bars, split.test_start, progress=False)
    changed = bars.copy()
    changed.iloc[t + 1:, changed.columns.get_loc("close")] *= np.exp(
        np.random.default_rng(9).normal(0, 0.01, len(bars) - t - 1))
    after = predictor.predict(changed, split.test_start, progress=False)
    pd.testing.assert_frame_equal(before.loc[:bars.index[t]], after.loc[:bars.index[t]])
    assert not np.allclose(before["forecast"].iloc[-50:], after["forecast"].iloc[-50:])


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


def test_entry_is_not_retrained_for_the_same_request(setup, tiny_base):
    split, registry, entries = setup
    again, trained = train_entry(split, load_base(tiny_base), make_method("lora"), registry, "t-lora",
                                 TrainConfig(steps=3, batch_size=4, window=CONTEXT + 1), "x", CONTEXT)
    assert not trained and again.ref == entries["lora"].ref
    forced, trained = train_entry(split, load_base(tiny_base), make_method("lora"), registry, "t-lora",
                                  TrainConfig(steps=3, batch_size=4, window=CONTEXT + 1), "x", CONTEXT, force=True)
    assert trained and forced.version == entries["lora"].version + 1
