"""The fair race: a learning-rate search with early stopping, judged on the validation split alone."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from llmsignal.data import load_bars
from llmsignal.finetune.bars import split_bars
from llmsignal.finetune.base import load_base
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import get_model, make_method
from llmsignal.finetune.train import EarlyStopping, TrainConfig, evaluate, learning_rate, train
from llmsignal.models.entries import train_entry
from llmsignal.models.registry import Registry
from llmsignal.run import QUICK_SEARCH, RunConfig, run
from tests.conftest import TINY_CONTEXT, synthetic_bars

SEARCH = TrainConfig(steps=12, batch_size=4, window=TINY_CONTEXT + 1, eval_every=2, patience=2,
                     lr_factors=(1.0, 30.0), probe_steps=4, checkpoint_every=2, schedule="constant")


@pytest.fixture(scope="module")
def bars_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "bars.csv"
    synthetic_bars(400).to_csv(path)
    return path


def _split(path):
    return split_bars(load_bars(path), context=TINY_CONTEXT, source=str(path))


def test_early_stopping_keeps_the_weights_of_the_best_validation_loss(tiny_base):
    base = load_base(tiny_base)
    table, bins = TokenTable(base.tokenizer), np.random.default_rng(0).integers(30, 70, 400)
    model = get_model(base.model, make_method("full"))
    config = TrainConfig(steps=40, batch_size=4, window=17, eval_every=2, patience=2, min_delta=0.0)
    result = train(model, table, [bins], [bins[:200]], config, lr=0.05)  # a rate high enough to overshoot
    losses = [loss for _, _, loss in result.val_curve]
    assert result.steps_used < config.steps  # stopped early
    assert result.best_step == result.val_curve[int(np.argmin(losses))][0]
    assert result.val_loss == pytest.approx(min(losses), abs=1e-6)
    assert evaluate(model, table, [bins[:200]], config) == pytest.approx(min(losses), abs=1e-6)
    assert [step for step, _, _ in result.val_curve] == list(range(0, result.steps_used + 1, 2))


def test_gains_smaller_than_min_delta_do_not_keep_a_flat_training_going():
    model = torch.nn.Linear(2, 2)
    stopping = EarlyStopping(patience=2, min_delta=0.01)
    stops = [stopping.observe(model, step, 0.0, loss) for step, loss in enumerate([1.0, 0.995, 0.992])]
    assert stops == [False, False, True]
    assert (stopping.best, stopping.best_step) == (1.0, 0)
    assert not EarlyStopping(patience=2, min_delta=0.01).observe(model, 0, 0.0, 1.0)


def test_schedules_warm_up_then_fall_or_hold():
    config = TrainConfig(steps=100, warmup=10)
    cosine, constant = learning_rate(config, 1.0), learning_rate(replace(config, schedule="constant"), 1.0)
    assert cosine(0) == constant(0) == pytest.approx(0.1) and cosine(10) == constant(10) == pytest.approx(1.0)
    assert cosine(99) == pytest.approx(0.1, abs=1e-3) and constant(99) == 1.0
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        learning_rate(replace(config, schedule="step"), 1.0)


def test_no_choice_of_the_search_reads_a_test_bar(bars_file, tmp_path, tiny_base):
    """Every test bar changed: the same learning rate, the same step, the same validation curves."""
    frame = pd.read_csv(bars_file, index_col=0)
    split = _split(bars_file)
    changed = frame.copy()
    test_rows = changed.index[split.test_start:]
    noise = np.exp(np.random.default_rng(1).normal(0, 0.01, len(test_rows)))
    for column in ("Open", "High", "Low", "Close"):
        changed.loc[test_rows, column] *= noise
    changed["High"] = changed[["Open", "High", "Low", "Close"]].max(axis=1)
    changed["Low"] = changed[["Open", "High", "Low", "Close"]].min(axis=1)
    changed_path = tmp_path / "changed.csv"
    changed.to_csv(changed_path)
    other = _split(changed_path)
    assert not np.allclose(other.test["close"], split.test["close"])
    base, method = load_base(tiny_base), make_method("lora")
    entries = [train_entry(s, base, method, Registry(tmp_path / name), "m", SEARCH, "x", TINY_CONTEXT)[0]
               for s, name in ((split, "a"), (other, "b"))]
    first, second = (e.metadata for e in entries)
    assert first["request_key"] != second["request_key"]  # different data, so a different request
    assert first["lr"] == second["lr"]
    assert first["cost"]["best_step"] == second["cost"]["best_step"]
    def curves(meta):  # (step, validation loss) of every rate tried; seconds differ from run to run
        return [[(step, loss) for step, _, loss in t["val_curve"]] for t in meta["search"]]

    assert curves(first) == curves(second)


def test_the_search_records_every_rate_and_keeps_the_best(bars_file, tmp_path, tiny_base):
    entry, _ = train_entry(_split(bars_file), load_base(tiny_base), make_method("lora"), Registry(tmp_path), "m",
                           SEARCH, "x", TINY_CONTEXT)
    trials = entry.metadata["search"]
    assert [t["lr"] for t in trials] == [pytest.approx(2e-3), pytest.approx(6e-2)]
    best = min(trials, key=lambda t: t["val_loss"])
    assert entry.metadata["lr"] == best["lr"]
    assert all(t["steps_used"] <= SEARCH.probe_steps for t in trials if t is not best)  # losers stop at the probe
    assert entry.metadata["cost"]["val_loss"] == pytest.approx(best["val_loss"], abs=1e-6)
    assert entry.metadata["cost"]["train_seconds"] == pytest.approx(sum(t["seconds"] for t in trials))


@pytest.mark.parametrize("phase", ["probe", "final"])
def test_an_interrupted_search_continues_to_the_same_entry(phase, bars_file, tmp_path, tiny_base, monkeypatch):
    split, base, method = _split(bars_file), load_base(tiny_base), make_method("full")
    reference, _ = train_entry(split, base, method, Registry(tmp_path / "a"), "m", SEARCH, "x", TINY_CONTEXT)
    steps = sum(t["steps_used"] for t in reference.metadata["search"])
    registry = Registry(tmp_path / "b")
    real_step, calls = torch.optim.AdamW.step, []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == (SEARCH.probe_steps + 2 if phase == "probe" else steps - 1):
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_entry(split, base, method, registry, "m", SEARCH, "x", TINY_CONTEXT)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert registry.versions("m") == []
    resumed, trained = train_entry(split, base, method, registry, "m", SEARCH, "x", TINY_CONTEXT, resume=True)
    assert trained
    assert resumed.metadata["lr"] == reference.metadata["lr"]
    assert [t["best_step"] for t in resumed.metadata["search"]] == [t["best_step"] for t in
                                                                    reference.metadata["search"]]
    expected, got = load_file(reference.file("model.safetensors")), load_file(resumed.file("model.safetensors"))
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor)
    again, trained = train_entry(split, base, method, registry, "m", SEARCH, "x", TINY_CONTEXT)
    assert not trained and again.ref == resumed.ref  # the same request reuses its entry


@pytest.mark.parametrize("budget", ["converged", "steps"])
def test_the_page_names_the_budget_and_shows_the_race(budget, bars_file, tmp_path, tiny_base):
    config = RunConfig(data=str(bars_file), methods=["lora", "adapter"], base=tiny_base, quick=True, budget=budget,
                       context=TINY_CONTEXT, registry=tmp_path / "reg", out=tmp_path / "out")
    table = run(config).drop_duplicates("method").set_index("method")  # training figures: one per method
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())["settings"]
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert settings["budget"].startswith(budget)
    assert {"lr", "steps_used", "best_step"} <= set(table.columns)
    if budget == "converged":
        assert "The training race" in page
        assert set(json.loads((tmp_path / "out" / "race.json").read_text())) == {"lora", "adapter"}
        assert table.loc["lora", "steps_used"] <= QUICK_SEARCH["steps"]
    else:
        assert "The training race" not in page
        assert table.loc["lora", "steps_used"] == 6 and table.loc["lora", "lr"] == "0.002"
