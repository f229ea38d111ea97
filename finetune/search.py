"""A learning-rate search with early stopping, judged on the validation split alone.

    >>> found = search(lambda: get_model(base.model, method), table, train_bins, val_bins,
    ...                TrainConfig(steps=1000, eval_every=25, probe_steps=100, schedule="constant"),
    ...                lrs=[2e-3, 6e-3])  # doctest: +SKIP
    >>> found.lr, found.result.best_step, [t.val_loss for t in found.trials]  # doctest: +SKIP

Every rate trains a fresh copy of the model (the same seed, so the same windows in the same order)
for ``probe_steps`` (or to the end, when 0); the rate with the lowest validation loss so far then
continues from where its probe paused until its validation loss stops improving, and its best step's
weights are kept. The losing probes cost ``probe_steps`` each, so a search where nothing is learnable ends soon. Nothing
here reads a test bar: the caller passes training and validation series only. A search of one rate
is plain training (with early stopping if ``eval_every`` is set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import trainable_state
from llmsignal.finetune.train import TrainConfig, TrainResult, train


@dataclass
class Trial:
    lr: float
    val_loss: float  # the best validation loss it reached
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
    """Probe every rate in ``lrs``, then train the best to convergence; see the module's docstring.

    ``checkpoint``/``resume`` work as in ``train``, across the whole search: finished probes are not
    trained again, and the training in progress continues from its last checkpoint.
    """
    state = resume or {"probes": [], "train": None}
    probes: list[dict] = list(state["probes"])  # per finished probe: its trial, and its paused state or weights

    def save(step: int, snapshot: dict) -> None:
        checkpoint(step, {"probes": probes, "train": snapshot})

    def run(lr: float, label: str, until: int | None, resume_from: dict | None) -> tuple[torch.nn.Module,
                                                                                        TrainResult, dict]:
        model, paused = make_model(), {}

        def keep(step: int, snapshot: dict) -> None:
            if until is not None and step >= until:
                paused.update(snapshot)
            if checkpoint:
                save(step, snapshot)

        result = train(model, table, train_bins, val_bins, config, lr, label, keep, resume_from, until)
        return model, result, paused

    finished: dict[int, TrainResult] = {}
    for i in range(len(probes), len(lrs) if len(lrs) > 1 else 0):
        model, result, paused = run(lrs[i], f"{desc} lr {lrs[i]:.2g}", config.probe_steps or config.steps,
                                    state["train"] if i == len(state["probes"]) else None)
        probes.append({"trial": asdict(_trial(lrs[i], result)), "paused": paused or None,
                       "weights": None if paused else _weights(model)})
        finished[i] = result
        state["train"] = None
        if checkpoint:
            save(0, None)
    trials = [Trial(**p["trial"]) for p in probes]
    best = int(np.argmin([_score(t.val_loss) for t in trials])) if trials else 0
    lr = lrs[best]
    if trials and probes[best]["paused"] is None:  # the best rate stopped early within its probe: done
        model = make_model()
        model.load_state_dict(probes[best]["weights"], strict=False)
        result = finished.get(best) or _result(trials[best], model)
    else:
        from_probe = probes[best]["paused"] if trials else None
        model, result, _ = run(lr, f"{desc} lr {lr:.2g}" if trials else desc, None, state["train"] or from_probe)
        if trials:
            trials[best] = _trial(lr, result)
    result.train_seconds = sum(t.seconds for t in trials) if trials else result.train_seconds
    return SearchResult(model, lr, result, trials or [_trial(lr, result)])


def _trial(lr: float, result: TrainResult) -> Trial:
    return Trial(lr, result.val_loss, result.steps_used, result.best_step, result.train_seconds,
                 [tuple(point) for point in result.val_curve])


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in trainable_state(model).items()}


def _score(val_loss: float) -> float:
    """A validation loss to minimise; none (too few validation bars) ranks last."""
    return val_loss if np.isfinite(val_loss) else np.inf


def _result(trial: Trial, model: torch.nn.Module) -> TrainResult:
    """The record of a rate whose probe already ended in early stopping."""
    return TrainResult(trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       train_seconds=trial.seconds, peak_memory_mb=float("nan"), final_loss=float("nan"),
                       val_loss=trial.val_loss, tokens_per_second=float("nan"), loss_history=[],
                       steps_used=trial.steps_used, best_step=trial.best_step, val_curve=trial.val_curve)
