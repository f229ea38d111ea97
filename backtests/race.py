"""The training race: what each method's learning-rate search did, cost against quality.

``race`` maps a method to the trials of its search, as entries record them: one dict per learning
rate with ``lr``, ``val_loss`` (its best), ``steps_used``, ``best_step``, ``seconds`` and ``val_curve``
(a list of ``[step, seconds, validation loss]``).

    >>> trial = {"lr": 2e-3, "val_loss": 1.40, "steps_used": 100, "best_step": 100, "seconds": 9.0,
    ...          "val_curve": [[0, 0.0, 1.5], [50, 4.5, 1.45], [100, 9.0, 1.40]]}
    >>> race_findings({"lora": [trial]})
    ['lora: still improving at its last check (step 100 of 100): more steps may help']
"""

from __future__ import annotations

import html

import pandas as pd
from matplotlib.figure import Figure

MARGIN = 0.002  # validation-loss gap (nats per token) below which two methods count as level


def winner(trials: list[dict]) -> dict:
    """The trial the search kept: the lowest validation loss (the first of equals)."""
    finite = [t for t in trials if t["val_loss"] == t["val_loss"]]
    return min(finite or trials, key=lambda t: t["val_loss"])


def race_findings(race: dict[str, list[dict]]) -> list[str]:
    """What a reader should know before trusting a method's row: where its search may have stopped short."""
    best = {name: winner(trials) for name, trials in race.items() if trials}
    leader = min(best, key=lambda name: best[name]["val_loss"], default=None)
    findings = []
    for name, trials in race.items():
        if not trials:
            continue
        chosen, rates = best[name], sorted(t["lr"] for t in trials)
        if len(rates) > 1 and chosen["lr"] == rates[-1]:
            findings.append(f"{name}: its best learning rate ({chosen['lr']:.2g}) was the largest tried; "
                            "a larger one may do better")
        if chosen["best_step"] > 0 and chosen["best_step"] == chosen["steps_used"]:
            findings.append(f"{name}: still improving at its last check (step {chosen['best_step']} of "
                            f"{chosen['steps_used']}): more steps may help")
        if chosen["best_step"] == 0 and len(chosen["val_curve"]) > 1:
            findings.append(f"{name}: no step improved the validation loss; the row is the untrained model")
        gap = chosen["val_loss"] - best[leader]["val_loss"]
        if name != leader and gap > MARGIN:
            findings.append(f"{name}: best validation loss {chosen['val_loss']:.4f}, {gap:.4f} above {leader}'s "
                            f"({best[leader]['val_loss']:.4f}): it learned less of the training data's pattern")
    return findings


def race_figure(race: dict[str, list[dict]]) -> Figure:
    """Validation loss against steps and against seconds; the kept rate solid, the others dotted."""
    fig = Figure(figsize=(11, 3.8))
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for index, (name, trials) in enumerate(race.items()):
        colour, chosen = f"C{index % 10}", winner(trials)
        for trial in trials:
            curve = pd.DataFrame(trial["val_curve"], columns=["step", "seconds", "loss"])
            kept = trial is chosen
            style = {"color": colour, "linestyle": "-" if kept else ":", "linewidth": 1.5 if kept else 1.0,
                     "label": f"{name} (lr {trial['lr']:.2g})" if kept else None}
            by_step.plot(curve["step"], curve["loss"], **style)
            by_time.plot(curve["seconds"], curve["loss"], **style)
    by_step.set_xlabel("step")
    by_time.set_xlabel("seconds of training")
    by_step.set_ylabel("validation loss")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=8, ncol=2)
    return fig


def race_table(race: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per method and learning rate tried, the kept one marked."""
    rows = [{"method": name, "lr": t["lr"], "best validation loss": t["val_loss"], "best step": t["best_step"],
             "steps": t["steps_used"], "seconds": t["seconds"], "kept": "yes" if t is winner(trials) else ""}
            for name, trials in race.items() for t in trials]
    return pd.DataFrame(rows)


def race_html(race: dict[str, list[dict]], png: str) -> str:
    """The race section of the comparison page; ``png`` is ``race_figure`` as a data URI."""
    if not any(len(t["val_curve"]) > 1 for trials in race.values() for t in trials):
        return ""  # a fixed-steps budget measures no validation curve
    findings = "".join(f"<li>{html.escape(line)}</li>" for line in race_findings(race))
    table = race_table(race).to_html(index=False, float_format=lambda v: f"{v:.4g}")
    return (f"<h2>The training race</h2><p>Each method's learning-rate search on the validation split (the test "
            f"bars are never read); solid: the rate kept.</p><img src=\"{png}\" alt=\"validation loss against "
            f"steps and seconds\">{f'<ul>{findings}</ul>' if findings else ''}"
            f"<details><summary>Every rate tried</summary>{table}</details>")
