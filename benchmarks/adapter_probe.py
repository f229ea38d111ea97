"""Does the frozen base already carry what a planted AR(1) needs, at the position where the next value is read?

    .venv/bin/python benchmarks/adapter_probe.py [--base embedded] [--bars 3000] [--phi -0.6]

A bottleneck adapter changes each position's hidden state from that position's hidden state alone. On an AR(1) the
next return is phi times the last, so an adapter can forecast it only if the hidden state where the next value is
read (the separator after the last value) already encodes the last return. This fits a ridge regression per layer
of the frozen base from a hidden state to (a) the last return's bin, at that value's own tens digit and at the
separator, and (b) the next return's bin at the separator, on the training windows, and prints the held-out R^2:
(a) at the separator near 1 would say a per-position adapter has the information where it needs it; at the digit
it says the information exists in the sequence, for attention to move; (b) is what the frozen base offers a
linear read-out (phi^2 at most). Test windows are never used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: the repo root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import ar1_bars
from llmsignal.finetune.base import load_base
from llmsignal.finetune.codec import PriceCodec, TokenTable
from llmsignal.finetune.precision import cpu_name


def hidden_states(base_spec: str, bins: np.ndarray, context: int, ends: np.ndarray) -> np.ndarray:
    """(layers + 1, windows, 2, width): each layer's hidden state at the separator after each window's last value
    (where the next value is read) and at that value's tens digit."""
    base = load_base(base_spec)
    table = TokenTable(base.tokenizer)
    windows = np.stack([bins[end - context:end] for end in ends])
    states = []
    with torch.no_grad():
        for chunk in np.array_split(windows, max(1, len(windows) // 64)):
            out = base.model(input_ids=table.ids(chunk), output_hidden_states=True)
            states.append(torch.stack(out.hidden_states)[:, :, [-1, -3]].float().numpy())
    return np.concatenate(states, axis=1)


def ridge_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             penalty: float = 1.0) -> float:
    """Held-out R^2 of a ridge regression (features standardised on the training rows)."""
    mean, scale = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mean) / scale, (x_test - mean) / scale
    a, b = np.c_[np.ones(len(a)), a], np.c_[np.ones(len(b)), b]
    coef = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
    predicted = b @ coef + y_train.mean()
    return float(1 - ((y_test - predicted) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--bars", type=int, default=3000)
    parser.add_argument("--phi", type=float, default=-0.6)
    parser.add_argument("--context", type=int, default=48)
    args = parser.parse_args()
    close = ar1_bars(args.bars, args.phi)["close"].to_numpy()
    train_end = int(len(close) * 0.7)  # the run's training split: test bars are never read
    codec = PriceCodec.fit(close[:train_end], args.context)
    bins = codec.to_bins(close)  # bins[i]: the return from close i to close i + 1
    ends = np.arange(args.context, train_end - 2)  # window bins[end - context:end]; its next value is bins[end]
    states = hidden_states(args.base, bins, args.context, ends)
    last, following = bins[ends - 1].astype(float), bins[ends].astype(float)
    cut = int(len(ends) * 0.8)
    print(f"CPU: {cpu_name()}; base {args.base}; AR(1) phi {args.phi}, {args.bars} bars, {len(ends)} training "
          f"windows (fit on the first {cut}, R^2 on the rest)")
    print(f"{'layer':>6} {'last value, at its tens digit':>25} {'last value, at the separator':>29} "
          f"{'next value, at the separator':>29}")
    for layer, state in enumerate(states):
        at_sep, at_digit = state[:, 0], state[:, 1]
        r2 = [ridge_r2(x[:cut], y[:cut], x[cut:], y[cut:])
              for x, y in ((at_digit, last), (at_sep, last), (at_sep, following))]
        print(f"{layer:>6} {r2[0]:>25.3f} {r2[1]:>29.3f} {r2[2]:>29.3f}")
    print(f"best possible R^2 of the next value from the last: about phi^2 = {args.phi ** 2:.2f}")


if __name__ == "__main__":
    main()
