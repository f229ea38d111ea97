"""How fast is each stage, and how far from the machine's limit? Prints one table.

    python benchmarks/run.py            # every row (about 15 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer bars, steps and sizes (about 3 minutes)

Rows are explained in benchmarks/README.md. Ratios are written like ``57.3x``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llmsignal.backtests.engine import run_backtest
from llmsignal.finetune.bars import split_bars
from llmsignal.finetune.base import FUSED_GELU, load_base
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import count_trainable, get_model, make_method
from llmsignal.finetune.train import PeakMemory, TrainConfig, make_optimizer
from llmsignal.models.entries import train_entry
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Registry
from llmsignal.strategies import ThresholdStrategy, signal_frame

ROOT = Path(__file__).resolve().parents[1]
ROWS: list[tuple[str, str, str, str]] = []


def row(stage: str, what: str, value: str, note: str = "") -> None:
    ROWS.append((stage, what, value, note))
    print(f"  {stage:<11} {what:<52} {value:>16}  {note}", file=sys.stderr, flush=True)


def synthetic_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0003,
                         "low": np.minimum(open_, close) * 0.9997, "close": close, "volume": 1.0},
                        index=pd.date_range("2015-01-01", periods=n, freq="h", name="timestamp"))


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large float32 matmul: the practical peak of this machine for dense training."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    began = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - began)


# -- prediction ---------------------------------------------------------------------------------------------------

class GenerateEveryBar(bt.Strategy):
    """The seed articles' way: one generate() call per bar inside next(), then trade the decoded number."""

    params = (("model", None), ("table", None), ("codec", None))

    def next(self) -> None:
        closes = np.array(self.data.close.get(size=self.p.codec.context + 1))
        if len(closes) <= self.p.codec.context:
            return
        ids = self.p.table.ids(self.p.codec.to_bins(closes))[None]
        digits = self.p.table.digits.tolist()
        with torch.no_grad():
            out = self.p.model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0,
                                        prefix_allowed_tokens_fn=lambda *_: digits)
        first, second = (digits.index(t) for t in out[0, -2:].tolist())
        forecast = closes[-1] * np.exp(self.p.codec.bin_returns()[10 * first + second])
        self.order_target_size(target=1000 if forecast > closes[-1] else -1000)


PREDICTION_MODES = [(1, "float32"), (1, "bfloat16"), (16, "float32"), (16, "bfloat16"), (48, "bfloat16")]


def bench_prediction(entry, bars: pd.DataFrame, naive_bars: int) -> None:
    start = entry.metadata["codec"]["context"]
    exact, speeds, gaps = None, {}, {}
    for k, precision in PREDICTION_MODES:
        predictor = Predictor.from_entry(entry, forecasts_per_pass=k, precision=precision)
        predictor.predict(bars.iloc[:start + 64], start, progress=False)  # warm-up: first-call allocations
        began = time.perf_counter()
        frame = predictor.predict(bars, start, progress=False)
        speeds[k, precision] = (len(bars) - start) / (time.perf_counter() - began)
        exact = frame if exact is None else exact
        gaps[k, precision] = float(np.abs(np.log(frame["forecast"] / exact["forecast"])).max() * 1e4)
    model = Predictor.from_entry(entry)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=bars.iloc[:naive_bars + start]))
    cerebro.addstrategy(GenerateEveryBar, model=model.model, table=model.table, codec=model.codec)
    began = time.perf_counter()
    cerebro.run()
    naive = naive_bars / (time.perf_counter() - began)
    row("predict", "generate() per bar in next(), forecasts/s", f"{naive:,.1f}", f"{naive_bars} bars, greedy")
    for (k, precision), speed in speeds.items():
        context = "own context" if k == 1 else f"{k} bars a window"
        row("predict", f"batched, {context}, {precision}: forecasts/s", f"{speed:,.0f}",
            f"{speed / naive:.1f}x per-bar generate(); forecasts within {gaps[k, precision]:.2f} bp of exact")
    row("predict", "batched exact (default) / per-bar generate()", f"{speeds[1, 'float32'] / naive:.1f}x",
        f"{len(bars) - start} bars, exact 100-bin distributions")
    (k, precision), best = max(speeds.items(), key=lambda item: item[1])
    row("predict", "fastest batched / per-bar generate()", f"{best / naive:.1f}x",
        f"{k} bars a window, {precision}; target >= 50x")


# -- training -----------------------------------------------------------------------------------------------------

def train_speed(model: torch.nn.Module, table: TokenTable, steps: int, batch: int,
                window: int) -> tuple[float, float, float, float]:
    """Tokens/s, model FLOP/s (6 x parameters x tokens, the usual convention), seconds per step and peak MB."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, lr=1e-4)
    ids = table.ids(np.random.default_rng(0).integers(30, 70, size=(batch, window)))
    model.train()
    with PeakMemory(torch.device("cpu")) as memory:
        for step in range(steps + 1):
            if step == 1:  # the first step pays for allocation; time the rest
                began = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)  # as llmsignal.finetune.train does
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - began) / steps
    tokens = ids.numel() / seconds
    return tokens, 6 * sum(p.numel() for p in model.parameters()) * tokens, seconds, memory.peak_mb


def bench_training(methods: list[str], base, gpt2_small: bool, steps: int, peak: float) -> None:
    table = TokenTable(base.tokenizer)
    for name in methods:
        method = make_method(name)
        if not method.trainable:
            continue
        tokens, flops, _, _ = train_speed(get_model(base.model, method), table, steps, 16, 49)
        row("train", f"embedded base, {name}: tokens/s", f"{tokens:,.0f}", f"{flops / peak:.0%} of matmul peak")
    if not gpt2_small:
        return
    small = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                       activation_function=FUSED_GELU))  # what load_base gives real GPT-2
    # the embedded tokenizer's ids are valid GPT-2 ids too: cost does not depend on which tokens they are
    for name in methods:
        method = make_method(name)
        if not method.trainable:
            continue
        model = get_model(small, method)
        tokens, flops, step, memory = train_speed(model, table, max(2, steps // 4), 4, 49)
        row("train", f"GPT-2 small (124M), {name}: tokens/s", f"{tokens:,.0f}",
            f"{flops / peak:.0%} of peak; {step:.2f} s/step (4x147 tokens); peak +{memory:,.0f} MB; "
            f"{count_trainable(model):,} trainable")


# -- backtest -----------------------------------------------------------------------------------------------------

class PlainThreshold(bt.Strategy):
    """The same rule as ThresholdStrategy written as a bare bt.Strategy: no Signal, no exposure plumbing."""

    params = (("threshold_bps", 0.5),)

    def next(self) -> None:
        edge = (self.data.forecast[0] / self.data.close[0] - 1) * 1e4
        exposure = 1 if edge > self.p.threshold_bps else -1 if edge < -self.p.threshold_bps else 0
        units = int(exposure * self.broker.getvalue() / self.data.close[0] / 1000) * 1000
        if units != self.position.size:
            self.order_target_size(target=units)


def bench_backtest(bars: pd.DataFrame, label: str) -> None:
    forecasts = pd.DataFrame({"forecast": bars["close"] * np.exp(np.random.default_rng(1).normal(0, 1e-4, len(bars))),
                              "p_up": 0.5}, index=bars.index)
    frame = signal_frame(bars, forecasts)
    speed = {ThresholdStrategy: 0.0, PlainThreshold: 0.0}
    for _ in range(3 if len(bars) <= 20_000 else 1):  # best of three, alternating: one busy moment must not decide
        for strategy in speed:  # same feed, costs and analyzers: only the strategy differs
            began = time.perf_counter()
            run_backtest(frame, strategy)
            speed[strategy] = max(speed[strategy], len(bars) / (time.perf_counter() - began))
    signal, plain = speed[ThresholdStrategy], speed[PlainThreshold]
    row("backtest", f"{label}: LLM-signal strategy, bars/s", f"{signal:,.0f}", "ThresholdStrategy via decide()")
    row("backtest", f"{label}: plain backtrader strategy, bars/s", f"{plain:,.0f}", "same rule in a bare next()")
    row("backtest", f"{label}: LLM-signal overhead", f"{plain / signal:.2f}x", "target <= 1.10x")


# -- end to end and scaling ---------------------------------------------------------------------------------------

def bench_end_to_end(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for args in ([["--quick"]] if quick else [["--quick"], []]):
            began = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "llmsignal.run", *args, "--registry", f"{tmp}/reg",
                                      "--out", f"{tmp}/out"], cwd=ROOT, stderr=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
            peak = _peak_rss_mb(child)
            if child.returncode:
                raise SystemExit(f"llmsignal run {' '.join(args)} failed with exit code {child.returncode}")
            wall = time.perf_counter() - began
            stages = json.loads(Path(f"{tmp}/out/timings.json").read_text())
            label = " ".join(["llmsignal run", *args])
            row("end-to-end", f"{label}: wall seconds", f"{wall:.0f}", f"peak RSS {peak:,.0f} MB")
            for stage, seconds in stages.items():
                row("end-to-end", f"{label}: {stage}", f"{seconds:.1f} s")


def _peak_rss_mb(child: subprocess.Popen) -> float:
    """The child's resident high-water mark (VmHWM), read until it exits.

    Not getrusage: a forked child's ru_maxrss starts from the parent's size before exec.
    """
    status, peak = Path(f"/proc/{child.pid}/status"), 0.0
    while child.poll() is None:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
            peak = max(peak, int(line.split()[1]) / 1024)
        time.sleep(0.2)
    return peak


def bench_scaling(entry, sizes: list[int]) -> None:
    exact, shared = Predictor.from_entry(entry), Predictor.from_entry(entry, forecasts_per_pass=16)
    for n in sizes:
        bars = synthetic_bars(n, seed=n)
        seconds = []
        for predictor in (exact, shared):
            began = time.perf_counter()
            forecasts = predictor.predict(bars, predictor.codec.context, progress=False)
            seconds.append(time.perf_counter() - began)
        began = time.perf_counter()
        run_backtest(signal_frame(bars, forecasts), ThresholdStrategy)
        backtest = time.perf_counter() - began
        row("scaling", f"{n:,} bars: predict exact / 16 a window / backtest, s",
            f"{seconds[0]:.1f} / {seconds[1]:.1f} / {backtest:.1f}",
            f"{n / seconds[0]:,.0f}, {n / seconds[1]:,.0f} and {n / backtest:,.0f} bars/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    peak = matmul_peak()
    row("machine", "float32 matmul peak (2048x2048), GFLOP/s", f"{peak / 1e9:,.1f}",
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores")
    base = load_base("embedded")
    with tempfile.TemporaryDirectory() as tmp:
        bars = synthetic_bars(1200 if args.quick else 5000)
        split = split_bars(bars)
        entry, _ = train_entry(split, base, make_method("lora"), Registry(tmp), "bench-lora",
                               TrainConfig(steps=2, batch_size=4), "synthetic")
        bench_prediction(entry, bars, naive_bars=50 if args.quick else 200)
        bench_training(["full", "lora", "adapter"] if args.quick else
                       ["full", "lora", "adapter", "houlsby", "parallel", "prefix", "ia3", "ln", "bitfit"],
                       base, gpt2_small=True, steps=4 if args.quick else 8, peak=peak)
        for n in ([1000] if args.quick else [5000, 100_000]):
            bench_backtest(synthetic_bars(n), f"{n:,} bars")
        bench_scaling(entry, [1000, 5000] if args.quick else [1000, 5000, 20_000, 100_000])
    bench_end_to_end(args.quick)
    width = max(len(r[1]) for r in ROWS)
    print(f"\n{'stage':<11} {'measure':<{width}} {'value':>16}  note")
    for stage, what, value, note in ROWS:
        print(f"{stage:<11} {what:<{width}} {value:>16}  {note}")


if __name__ == "__main__":
    main()
