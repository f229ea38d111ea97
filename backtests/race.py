"""The training race: what each method's learning-rate search did, cost against quality.

``race`` maps a method to the trials of its search, as entries record them: one dict per learning
rate with ``lr``, ``val_loss`` (its best), ``steps_used``, ``best_step``, ``seconds`` and ``val_curve``
(a list of ``[step, seconds, validation loss]``).

    >>> trial = {"lr": 2e-3, "val_loss": 1.40, "steps_used": 100, "best_step": 100, "seconds": 9.0,
    ...          "val_curve": [[0, 0.0, 1.5], [50, 4.5, 1.45], [100, 9.0, 1.40]]}
    >>> race_findings({"lora": [trial]})
    ['lora: still improving at its last check (step 100 of 100): more steps may help']

A method that trains nothing (``zero-shot``, or a search whose trials took no step) is not in the race:

    >>> race_findings({"lora": [trial], "zero-shot": [{**trial, "steps_used": 0, "best_step": 0}]})
    ['lora: still improving at its last check (step 100 of 100): more steps may help']
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

MARGIN = 0.002  # validation-loss gap (nats per token) below which two methods count as level
UNTRAINED = ("zero-shot",)  # methods that never train, whatever their entries record
BENCHMARK_STYLE = {"color": "black", "linestyle": "--"}  # buy & hold, and the actual series, in every chart

_TAB20 = colormaps["tab20"].colors
PALETTE = [*_TAB20[0::2], *_TAB20[1::2]]  # the 10 strong colours first, then their light partners
LINESTYLES = ["-", "--", "-.", ":"]  # beyond 20 series the colours repeat with another line style


def series_styles(names: Iterable[str]) -> dict[str, dict]:
    """One colour and line style per name, fixed by the sorted list of names, so that every chart of a page
    draws the same method alike; no two of the first 80 names share both.

    >>> styles = series_styles(["lora", "full", "adapter"])
    >>> styles["adapter"]["color"] == PALETTE[0] and styles["lora"]["color"] == PALETTE[2]
    True
    """
    ordered = sorted(set(names))
    return {name: {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}
            for i, name in enumerate(ordered)}


def untrained(name: str, trials: Sequence[dict]) -> bool:
    """Whether a method trained nothing: named so, or no trial took a step."""
    if name.rsplit("/", 1)[-1] in UNTRAINED:
        return True
    steps = [t.get("steps_used") for t in trials]
    return all(s is None or (isinstance(s, float) and math.isnan(s)) or s == 0 for s in steps)


def trained(race: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The race without the methods that trained nothing."""
    return {name: trials for name, trials in race.items() if trials and not untrained(name, trials)}


def robust_limits(curves: Iterable[Sequence[float]], head: float = 0.1, upper: float = 0.98,
                  apart: float = 5.0) -> tuple[float, float]:
    """Y limits that show the differences between curves: each curve's first steps (an untrained model's loss,
    far above the rest) are left out, a curve that stays far above all others (``apart`` times the median
    curve's height above the lowest point: scratch against pretrained bases) does not stretch the axis, and the
    top is a high quantile of what remains, not its maximum. Whatever lies above is for the caller to name.

    >>> robust_limits([[2.8, 1.5, 1.45, 1.4], [1.5, 1.48, 1.47, 1.46]])[1] < 1.6
    True
    >>> robust_limits([[2.8, 2.5, 2.3, 2.1], [1.5, 1.48, 1.47], [1.5, 1.45, 1.42], [1.5, 1.46, 1.44]])[1] < 1.6
    True
    """
    tails = []
    for curve in curves:
        values = np.asarray(curve, dtype=float)
        values = values[max(1, int(len(values) * head)) if len(values) > 1 else 0:]
        tails.append(values[np.isfinite(values)])
    tails = [tail for tail in tails if len(tail)]
    if not tails:
        return (0.0, 1.0)
    lowest = min(float(tail.min()) for tail in tails)
    heights = np.array([np.quantile(tail, upper) - lowest for tail in tails])
    typical = float(np.median(heights))
    kept = [tail for tail, height in zip(tails, heights, strict=True) if typical <= 0 or height <= apart * typical]
    pooled = np.concatenate(kept)
    low, high = float(pooled.min()), float(np.quantile(pooled, upper))
    pad = (high - low) * 0.08 or abs(high) * 0.01 or 0.01
    return (low - pad, high + pad)


def above(named: dict[str, Sequence[float]], top: float) -> str:
    """A note naming the curves that end above ``top`` (with where they end), or that only their first steps do.

    >>> above({"scratch": [2.8, 2.1], "lora": [1.5, 1.4]}, 1.6)
    'y axis cut; above it: scratch (ends at 2.1)'
    """
    ends = {name: float(np.asarray(c, dtype=float)[-1]) for name, c in named.items() if len(c)}
    over = [f"{name} (ends at {end:.3g})" for name, end in ends.items() if end > top]
    if over:
        return "y axis cut; above it: " + ", ".join(over)
    if any(np.nanmax(np.asarray(c, dtype=float)) > top for c in named.values() if len(c)):
        return "y axis cut: the first steps lie above it"
    return ""


def winner(trials: list[dict]) -> dict:
    """The trial the search kept: the lowest validation loss (the first of equals)."""
    finite = [t for t in trials if t["val_loss"] == t["val_loss"]]
    return min(finite or trials, key=lambda t: t["val_loss"])


def race_findings(race: dict[str, list[dict]]) -> list[str]:
    """What a reader should know before trusting a method's row: where its search may have stopped short."""
    race = trained(race)
    best = {name: winner(trials) for name, trials in race.items()}
    leader = min(best, key=lambda name: best[name]["val_loss"], default=None)
    findings = []
    for name, trials in race.items():
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


def race_figure(race: dict[str, list[dict]], styles: dict[str, dict] | None = None) -> Figure:
    """Validation loss against steps and against seconds; the kept rate solid, the others dotted. The y axis
    leaves out the untrained first checks (``robust_limits``); the legend sits below the axes."""
    race = trained(race)
    styles = styles or series_styles(race)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    curves, kept_curves = [], {}
    for name, trials in race.items():
        colour, chosen = styles[name]["color"], winner(trials)
        for trial in trials:
            curve = pd.DataFrame(trial["val_curve"], columns=["step", "seconds", "loss"])
            kept = trial is chosen
            curves.append(curve["loss"].to_numpy())
            if kept:
                kept_curves[name] = curve["loss"].to_numpy()
            style = {"color": colour, "linestyle": styles[name]["linestyle"] if kept else ":",
                     "linewidth": 1.6 if kept else 1.0}
            by_step.plot(curve["step"], curve["loss"], label=f"{name} (lr {trial['lr']:.2g})" if kept else None,
                         **style)
            by_time.plot(curve["seconds"], curve["loss"], **style)
    low, high = robust_limits(curves)
    by_step.set_ylim(low, high)
    by_step.set_xlabel("step")
    by_time.set_xlabel("seconds of training")
    by_step.set_ylabel("validation loss")
    by_step.set_title(above(kept_curves, high), fontsize=8, loc="left")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    if race:
        fig.legend(loc="outside lower center", fontsize=8, ncol=min(5, len(race)), frameon=False)
    return fig


def race_table(race: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per method and learning rate tried, the kept one marked."""
    rows = [{"method": name, "lr": t["lr"], "best validation loss": t["val_loss"], "best step": t["best_step"],
             "steps": t["steps_used"], "seconds": t["seconds"], "kept": "yes" if t is winner(trials) else ""}
            for name, trials in trained(race).items() for t in trials]
    return pd.DataFrame(rows)


def race_html(race: dict[str, list[dict]], png: str, also_untrained: Iterable[str] = ()) -> str:
    """The race section of the comparison page; ``png`` is ``race_figure`` as a data URI. ``also_untrained`` names
    methods known to train nothing (no trainable parameters) whatever their search recorded."""
    also = set(also_untrained)
    left_out = [name for name, trials in race.items() if name in also or untrained(name, trials)]
    race = {name: trials for name, trials in trained(race).items() if name not in also}
    if not any(len(t["val_curve"]) > 1 for trials in race.values() for t in trials):
        return ""  # a fixed-steps budget measures no validation curve
    findings = "".join(f"<li>{html.escape(line)}</li>" for line in race_findings(race))
    table = race_table(race).to_html(index=False, float_format=lambda v: f"{v:.4g}")
    untouched = (f" Not in the race, trained nothing: {html.escape(', '.join(left_out))}." if left_out else "")
    return (f"<h2>The training race</h2><p>Each method's learning-rate search on the validation split (the test "
            f"bars are never read); solid: the rate kept.{untouched}</p><img src=\"{png}\" alt=\"validation loss "
            f"against steps and seconds\">{f'<ul>{findings}</ul>' if findings else ''}"
            f"<details><summary>Every rate tried</summary><div class=\"wide\">{table}</div></details>")
