"""A learning-rate search with early stopping, judged on the validation split alone.

    >>> found = search(lambda: get_model(base.model, method), table, train_bins, val_bins,
    ...                TrainConfig(steps=600, eval_every=25), lrs=[6.7e-4, 2e-3, 6e-3])  # doctest: +SKIP
    >>> found.lr, found.result.best_step, [t.val_loss for t in found.trials]  # doctest: +SKIP

Each learning rate trains a fresh copy of the model (the same seed, so the same windows in the same
order) until its validation loss stops improving; the rate whose best validation loss is lowest wins,
with the weights of its best step. Nothing here reads a test bar: the caller passes training and
validation series only. A search of one rate without ``eval_every`` is plain training for a fixed
number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import trainable_state
from llmsignal.finetune.train import TrainConfig, TrainResult, train


@dataclass
class Trial:
    lr: float
    val_loss: float
    steps_used: int
    best_step: int
    seconds: float
    val_curve: list[tuple[int, float, float]]  # (step, seconds, validation loss)


@dataclass
class SearchResult:
    model: torch.nn.Module  # the winner, with the weights of its best step
    lr: float
    result: TrainResult  # the winner's training, with the whole search's seconds
    trials: list[Trial]


def search(make_model: Callable[[], torch.nn.Module], table: TokenTable, train_bins: list[np.ndarray],
           val_bins: list[np.ndarray], config: TrainConfig, lrs: list[float], desc: str = "train",
           checkpoint: Callable[[int, dict], None] | None = None, resume: dict | None = None) -> SearchResult:
    """Train one model per learning rate in ``lrs`` and keep the one with the lowest validation loss.

    ``checkpoint``/``resume`` work as in ``train``, across the whole search: finished rates are not
    trained again, and the rate in progress continues from its last checkpoint.
    """
    state = resume or {"trial": 0, "done": [], "kept": {}, "train": None}
    trials = [Trial(**t) for t in state["done"]]
    progress = {"kept": state["kept"]}  # the best rate's weights so far, which a checkpoint carries
    results: dict[int, TrainResult] = {}

    def save(step: int, snapshot: dict | None, trial: int) -> None:
        checkpoint(step, {"trial": trial, "done": [asdict(t) for t in trials], "kept": progress["kept"],
                          "train": snapshot})

    for i in range(state["trial"], len(lrs)):
        model = make_model()
        result = train(model, table, train_bins, val_bins, config, lrs[i],
                       f"{desc} lr {lrs[i]:.2g}" if len(lrs) > 1 else desc,
                       partial(save, trial=i) if checkpoint else None, state["train"] if i == state["trial"] else None)
        if not trials or _score(result.val_loss) < min(_score(t.val_loss) for t in trials):
            progress["kept"] = {n: t.detach().clone() for n, t in trainable_state(model).items()}
        trials.append(Trial(lrs[i], result.val_loss, result.steps_used, result.best_step, result.train_seconds,
                            result.val_curve))
        results[i] = result
        if checkpoint and i + 1 < len(lrs):
            save(0, None, i + 1)
    winner = int(np.argmin([_score(t.val_loss) for t in trials]))
    model = make_model()
    model.load_state_dict(progress["kept"], strict=False)
    result = results.get(winner) or _result_from(trials[winner], results)
    result.train_seconds = sum(t.seconds for t in trials)
    return SearchResult(model, trials[winner].lr, result, trials)


def _score(val_loss: float) -> float:
    """A validation loss to minimise; none (too few validation bars) ranks last."""
    return val_loss if np.isfinite(val_loss) else np.inf


def _result_from(trial: Trial, results: dict[int, TrainResult]) -> TrainResult:
    """The winner's record when it was trained before an interruption: what its trial kept."""
    any_result = next(iter(results.values()))
    return TrainResult(trainable_params=any_result.trainable_params, train_seconds=trial.seconds,
                       peak_memory_mb=max(r.peak_memory_mb for r in results.values()), final_loss=float("nan"),
                       val_loss=trial.val_loss, tokens_per_second=any_result.tokens_per_second, loss_history=[],
                       steps_used=trial.steps_used, best_step=trial.best_step, val_curve=trial.val_curve)
