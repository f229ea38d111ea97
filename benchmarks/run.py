"""How fast is each stage, and how far from the machine's limit? Prints one table a noisy machine cannot fool.

    python benchmarks/run.py                 # every row (under 30 minutes on 2 quiet cores)
    python benchmarks/run.py --quick         # fewer bars, steps and pairs (under 8 minutes on 2 quiet cores)
    python benchmarks/run.py --beside-load   # the same, beside one CPU-bound process started for the run
    python benchmarks/run.py --device cuda   # the model rows on a GPU

Every ratio is measured in alternating repeats (A, B, A, B, ...) and reported as the median and range of
the per-pair ratios, e.g. ``2.84x (2.71–2.95, 3 pairs)``: both sides of a pair ran back to back, so a
busy moment slows one pair, not the ratio. Every "% of peak" is taken against a matmul peak measured
right before it; a run whose peak itself varied by more than 20% is flagged. Load that slows the two
sides of a ratio unequally still moves it: the table gives the load average and the share of its time
the benchmark waited for a core. How it measures is ``benchmarks/harness.py``; the rows are explained in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

if not __package__:  # `python benchmarks/run.py`: the repository root, where `benchmarks` is a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backtrader as bt
import numpy as np
import pandas as pd
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmarks.harness import (
    Peaks,
    Ratio,
    Table,
    alternate,
    beside_load,
    choose_device,
    flop_per_token,
    machine_lines,
    median_range,
    scheduler_times,
    share_of_peak,
    timed,
    waited_share,
)
from benchmarks.synthetic import loaded_bars
from llmsignal.backtests.engine import run_backtest
from llmsignal.data import DEFAULT_SOURCE, load_bars
from llmsignal.finetune.bars import Split, split_bars
from llmsignal.finetune.base import FUSED_GELU, Base, load_base
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import count_trainable, get_model, make_method
from llmsignal.finetune.precision import native_bfloat16
from llmsignal.finetune.train import PeakMemory, TrainConfig, TrainStep
from llmsignal.models.entries import entry_registry, train_entry
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Registry
from llmsignal.run import DEFAULT_METHODS, RunConfig
from llmsignal.strategies import ThresholdStrategy, signal_frame

ROOT = Path(__file__).resolve().parents[1]
TABLE = Table()
row = TABLE.row


@dataclass(frozen=True)
class Plan:
    """How much of each row to run: ``--quick`` is a smoke test of every row, the default the figures."""

    pairs: int  # alternating pairs of every cheap ratio
    stage_pairs: int  # repeats (pairs, where the stage has two sides) of the whole training stage
    stage_steps: int  # training steps per method in the stage rows (the default run: 200)
    speed_steps: int  # timed steps per model-speed sample
    step_chunk: int  # steps per sample of the float32 / bfloat16 rows on the embedded base
    predict_bars: int
    naive_bars: int  # bars of the per-bar generate() loop
    embedded_methods: tuple[str, ...]
    small_methods: tuple[str, ...]  # GPT-2 small (124M)
    backtest_bars: tuple[int, ...]
    scaling_bars: tuple[int, ...]
    end_to_end: tuple[tuple[str, ...], ...]  # llmsignal run arguments
    budget_stage: bool = False  # the training stage under the search against fixed steps (minutes a pair)

    @classmethod
    def make(cls, quick: bool, pairs: int | None = None) -> Plan:
        if quick:
            plan = cls(pairs=2, stage_pairs=2, stage_steps=30, speed_steps=4, step_chunk=2, predict_bars=600,
                       naive_bars=40, embedded_methods=("full", "lora", "adapter"), small_methods=("full", "lora"),
                       backtest_bars=(1000,), scaling_bars=(500, 1000), end_to_end=(("--quick",),))
        else:
            plan = cls(pairs=3, stage_pairs=2, stage_steps=200, speed_steps=8, step_chunk=4, predict_bars=2000,
                       naive_bars=120,
                       embedded_methods=("full", "lora", "adapter", "houlsby", "parallel", "prefix", "ia3", "ln",
                                         "bitfit"),
                       small_methods=("full", "lora", "adapter", "ia3"), backtest_bars=(5000, 20_000),
                       scaling_bars=(1000, 5000, 20_000), end_to_end=(("--quick",), ()), budget_stage=True)
        return replace(plan, pairs=pairs, stage_pairs=pairs) if pairs else plan


# -- training: the default run's stage ------------------------------------------------------------------------------

def stage_methods() -> list[str]:
    """The methods the default run trains (zero-shot trains nothing)."""
    return [m for m in DEFAULT_METHODS if make_method(m).trainable]


def stage_split() -> Split:
    """The default run's EURUSD H1 split."""
    run = RunConfig()
    return split_bars(load_bars(None), run.test, run.val, run.context, source=DEFAULT_SOURCE)


def random_ids(table: TokenTable, batch: int, window: int) -> torch.Tensor:
    """A batch of windows of random mid-range bins: a step costs the same whatever its tokens are."""
    return table.ids(np.random.default_rng(0).integers(30, 70, size=(batch, window)))


def time_stage_entry(split: Split, base: Base, method: str, config: TrainConfig) -> tuple[float, dict]:
    """Seconds of one method's ``train_entry`` in a fresh registry (as the run's "train" stage times it),
    and the entry's recorded cost (its training loop's tokens/s, validation loss)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):  # no progress bars
        began = time.perf_counter()
        entry, _ = train_entry(split, base, make_method(method), entry_registry(tmp), f"eurusd-{method}", config,
                               DEFAULT_SOURCE, config.window - 1, force=True)
        return time.perf_counter() - began, entry.metadata["cost"]


@dataclass
class StageSamples:
    """Per (method, config label): seconds of each repeat, the loop's share of the adjacent peak, last val loss."""

    seconds: dict[tuple[str, str], list[float]]
    shares: dict[tuple[str, str], list[float]]
    val_loss: dict[tuple[str, str], float]

    def total(self, label: str, methods: Sequence[str]) -> list[float]:
        """The whole stage's seconds in each repeat."""
        return [sum(spent) for spent in zip(*(self.seconds[m, label] for m in methods), strict=True)]


def measure_stage(split: Split, base: Base, methods: Sequence[str], configs: dict[str, TrainConfig], pairs: int,
                  peaks: Peaks) -> StageSamples:
    """Each method trained with each config in turn (A, B, A, B, ...), a matmul peak right before each."""
    for config in configs.values():  # warm-up: first-call allocations and kernel choices, not timed
        time_stage_entry(split, base, "lora", replace(config, steps=2))
    flop = {m: flop_per_token(get_model(base.model, make_method(m))) for m in methods}
    samples = StageSamples({}, {}, {})
    for pair in range(1, pairs + 1):
        for method in methods:  # the samples of a pair run back to back
            for label, config in configs.items():
                peak = peaks.measure(config.precision)  # the peak of the format it trains in
                spent, cost = time_stage_entry(split, base, method, config)
                print(f"    train stage, repeat {pair}/{pairs}: {method} {label} {spent:.1f} s", file=sys.stderr)
                samples.seconds.setdefault((method, label), []).append(spent)
                samples.shares.setdefault((method, label), []).append(flop[method] * cost["tokens_per_second"] / peak)
                samples.val_loss[method, label] = cost["val_loss"]
    return samples


def bench_train_stage(base: Base, plan: Plan, peaks: Peaks) -> None:
    """The default run's training stage (full, lora, adapter, scratch on EURUSD H1) at a fixed budget of
    ``plan.stage_steps`` steps: seconds, the loop's share of the peak and the validation loss of each method."""
    config = RunConfig(budget="steps", steps=plan.stage_steps).train_config()
    methods = stage_methods()
    got = measure_stage(stage_split(), base, methods, {"steps": config}, plan.stage_pairs, peaks)
    for m in methods:
        row("train", f"stage, {m}: seconds", median_range(got.seconds[m, "steps"], ".1f"),
            f"loop at {share_of_peak(Ratio(tuple(got.shares[m, 'steps'])))} ({config.precision}); "
            f"val loss {got.val_loss[m, 'steps']:.4f}")
    row("train", f"stage, all {len(methods)}: seconds", median_range(got.total("steps", methods), ".1f"),
        f"{', '.join(methods)}: {config.steps} steps x {config.batch_size} windows of {config.window}, "
        f"EURUSD H1, {config.precision}, dropout {config.dropout}; "
        f"{plan.stage_pairs} repeat{'s' if plan.stage_pairs > 1 else ''}, not a ratio")


def bench_budget_stage(base: Base, plan: Plan, peaks: Peaks) -> None:
    """The default run's training stage under ``--budget converged`` (the search) against ``--budget steps``
    (200 steps at each method's own rate), same settings otherwise, in alternating pairs."""
    if not plan.budget_stage:
        row("train", "stage, converged / steps budget", "skipped", "full plan only (the search's own length)")
        return
    configs = {budget: RunConfig(budget=budget).train_config() for budget in ("steps", "converged")}
    methods = stage_methods()
    got = measure_stage(stage_split(), base, methods, configs, plan.stage_pairs, peaks)
    totals = {budget: got.total(budget, methods) for budget in configs}
    for m in methods:
        row("train", f"stage, {m}: converged / steps budget", str(Ratio.of(got.seconds[m, "converged"],
                                                                         got.seconds[m, "steps"])),
            f"{median_range(got.seconds[m, 'converged'], '.1f')} / {median_range(got.seconds[m, 'steps'], '.1f')}"
            f" s; val loss {got.val_loss[m, 'converged']:.4f} / {got.val_loss[m, 'steps']:.4f}")
    row("train", f"stage, all {len(methods)}: converged / steps budget (target <= 1.5x)",
        str(Ratio.of(totals["converged"], totals["steps"])),
        f"{median_range(totals['converged'], '.1f')} / {median_range(totals['steps'], '.1f')} s, EURUSD H1")


# -- training: model speed against the adjacent peak ---------------------------------------------------------------

class Stepper:
    """A measure: ``steps`` of the training step ``train()`` takes (``TrainStep``: the config's dropout and
    precision, attention in float32 under bfloat16, clipping, fused AdamW) on one fixed batch, in seconds."""

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor, config: TrainConfig, dev: torch.device,
                 steps: int) -> None:
        self.step = TrainStep(model, config, lr=1e-4, dev=dev)
        self.model, self.ids, self.dev, self.steps = self.step.model, ids.to(dev), dev, steps
        with PeakMemory(dev) as memory:
            self._run(1)  # the first step pays for allocation and the optimizer's state
        self.memory_mb = memory.peak_mb

    def _run(self, steps: int) -> None:
        with self.step:
            for _ in range(steps):
                self.step(self.ids)

    def __call__(self) -> float:
        return timed(lambda: self._run(self.steps), self.dev)

    def tokens_per_second(self, seconds: float) -> float:
        return self.ids.numel() * self.steps / seconds


def speed_rows(label: str, base_model: torch.nn.Module, methods: Sequence[str], table: TokenTable, steps: int,
               batch: int, plan: Plan, peaks: Peaks, dev: torch.device) -> None:
    """tokens/s per method with the default run's settings, each sample right after a peak of its format."""
    config = RunConfig().train_config()  # precision resolved for this device
    ids = random_ids(table, batch, config.window)
    for name in methods:
        stepper = Stepper(get_model(base_model, make_method(name)), ids, config, dev, steps)
        samples = alternate({"peak": lambda: peaks.measure(config.precision), "train": stepper}, plan.pairs)
        tokens = [stepper.tokens_per_second(s) for s in samples["train"]]
        flops = [flop_per_token(stepper.model) * t for t in tokens]
        row("train", f"{label}, {name}: tokens/s", median_range(tokens),
            f"{share_of_peak(Ratio.of(flops, samples['peak']))} ({config.precision}); "
            f"{batch}x{ids.shape[1]} tokens a step; {count_trainable(stepper.model):,} trainable; "
            f"peak +{stepper.memory_mb:,.0f} MB")


def gpt2_small() -> GPT2LMHeadModel:
    """GPT-2 small's shape with random weights: what ``load_base`` gives real GPT-2, costing the same."""
    return GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                      activation_function=FUSED_GELU))


def bench_train_speeds(base: Base, plan: Plan, peaks: Peaks, dev: torch.device) -> None:
    table = TokenTable(base.tokenizer)
    speed_rows("embedded base", base.model, plan.embedded_methods, table, plan.speed_steps, 16, plan, peaks, dev)
    # the embedded tokenizer's ids are valid GPT-2 ids too: cost does not depend on which tokens they are
    speed_rows("GPT-2 small (124M)", gpt2_small(), plan.small_methods, table, max(2, plan.speed_steps // 4), 4,
               plan, peaks, dev)


def bench_precision_steps(base: Base, plan: Plan, dev: torch.device) -> None:
    """``--precision float32`` against ``bfloat16`` (the default run's settings otherwise), alternating: the
    choice ``--precision auto`` makes, measured on this machine for a small and a large model."""
    if not native_bfloat16(dev):
        row("train", "float32 / bfloat16 steps", "skipped", "no native bfloat16 here: auto picks float32")
        return
    config = RunConfig().train_config()
    table = TokenTable(base.tokenizer)
    for label, model, batch, steps in (("embedded base", base.model, 16, plan.step_chunk),
                                       ("GPT-2 small (124M)", gpt2_small(), 4, 1)):
        ids = random_ids(table, batch, config.window)
        for m in ("full", "lora"):
            measures = {p: Stepper(get_model(model, make_method(m)), ids, replace(config, precision=p), dev, steps)
                        for p in ("float32", "bfloat16")}
            samples = alternate(measures, plan.pairs)
            row("train", f"{label}, {m}: float32 / bfloat16 step", str(Ratio.of(samples["float32"],
                                                                                 samples["bfloat16"])),
                f"{median_range([s / steps for s in samples['float32']], '.4f')} / "
                f"{median_range([s / steps for s in samples['bfloat16']], '.4f')} s a step, {batch}x{config.window}")


# -- prediction ---------------------------------------------------------------------------------------------------

class GenerateEveryBar(bt.Strategy):
    """The seed articles' way: one generate() call per bar inside next(), then trade the decoded number."""

    params = (("model", None), ("table", None), ("codec", None))

    def next(self) -> None:
        closes = np.array(self.data.close.get(size=self.p.codec.context + 1))
        if len(closes) <= self.p.codec.context:
            return
        ids = self.p.table.ids(self.p.codec.to_bins(closes))[None].to(self.p.model.device)
        digits = self.p.table.digits.tolist()
        with torch.no_grad():
            out = self.p.model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0,
                                        prefix_allowed_tokens_fn=lambda *_: digits)
        first, second = (digits.index(t) for t in out[0, -2:].tolist())
        forecast = closes[-1] * np.exp(self.p.codec.bin_returns()[10 * first + second])
        self.order_target_size(target=1000 if forecast > closes[-1] else -1000)


def prediction_modes(dev: torch.device) -> list[tuple[int, str]]:
    """(forecasts per pass, precision) of each batched row; bfloat16 only where the device computes it."""
    modes = [(1, "float32"), (16, "float32")]
    if native_bfloat16(dev):
        modes[1:1] = [(1, "bfloat16")]
        modes += [(16, "bfloat16"), (48, "bfloat16")]
    return modes


class PredictTimer:
    """A measure: seconds of ``predictor.predict`` over ``bars``, keeping the latest forecasts in ``last``."""

    def __init__(self, predictor: Predictor, bars: pd.DataFrame, dev: torch.device) -> None:
        self.predictor, self.bars, self.dev = predictor, bars, dev
        self.last = pd.DataFrame()

    def __call__(self) -> float:
        def work() -> None:
            self.last = self.predictor.predict(self.bars, self.predictor.codec.context, progress=False)
        return timed(work, self.dev)


def naive_measure(predictor: Predictor, bars: pd.DataFrame, dev: torch.device) -> Callable[[], float]:
    """Seconds of the per-bar generate() loop over ``bars``."""
    def measure() -> float:
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=bars))
        cerebro.addstrategy(GenerateEveryBar, model=predictor.model, table=predictor.table, codec=predictor.codec)
        return timed(cerebro.run, dev)
    return measure


def mode_label(k: int, precision: str) -> str:
    return f"{'own context' if k == 1 else f'{k} bars a window'}, {precision}"


@contextlib.contextmanager
def one_cpu_thread(dev: torch.device) -> Iterator[None]:
    """torch on one CPU thread for the block (a no-op on a GPU).

    The per-bar loop is thousands of tiny kernels, and with two threads each one waits at the thread barrier
    for whichever thread a busy neighbour has displaced, which slows the loop far more than the batched
    passes; on one thread a neighbour only takes turns, which slows both sides alike.
    """
    if dev.type == "cuda":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def bench_prediction(entry, bars: pd.DataFrame, plan: Plan, dev: torch.device) -> None:
    """Batched exact distributions in every mode against the per-bar generate() loop, in rounds: one sample
    of each per round, and every ratio taken between two samples of the same round; on a CPU, on one
    thread (see ``one_cpu_thread``)."""
    with one_cpu_thread(dev):
        _bench_prediction(entry, bars, plan, dev)


def _bench_prediction(entry, bars: pd.DataFrame, plan: Plan, dev: torch.device) -> None:
    start = entry.metadata["codec"]["context"]
    timers: dict[tuple[int, str], PredictTimer] = {}
    for k, precision in prediction_modes(dev):
        predictor = Predictor.from_entry(entry, forecasts_per_pass=k, precision=precision)
        predictor.predict(bars.iloc[:start + 64], start, progress=False)  # warm-up: first-call allocations
        timers[k, precision] = PredictTimer(predictor, bars, dev)
    naive = naive_measure(Predictor.from_entry(entry), bars.iloc[:plan.naive_bars + start], dev)
    naive()  # warm-up of the loop
    seconds = alternate({"naive": naive, **{mode_label(*mode): timer for mode, timer in timers.items()}}, plan.pairs)
    naive_speed = [plan.naive_bars / s for s in seconds.pop("naive")]
    speed = {label: [(len(bars) - start) / s for s in spent] for label, spent in seconds.items()}
    row("predict", "generate() per bar in next(), forecasts/s", median_range(naive_speed, ",.1f"),
        f"{plan.naive_bars} bars, greedy, KV cache")
    exact = timers[1, "float32"].last["forecast"]
    for mode, timer in timers.items():
        gap = float(np.abs(np.log(timer.last["forecast"] / exact)).max() * 1e4)
        row("predict", f"batched, {mode_label(*mode)}: forecasts/s", median_range(speed[mode_label(*mode)]),
            f"{Ratio.of(speed[mode_label(*mode)], naive_speed)} per-bar generate(); within {gap:.2f} bp of exact")
    default = mode_label(1, "float32")
    row("predict", "batched exact (default) / per-bar generate()", str(Ratio.of(speed[default], naive_speed)),
        f"{len(bars) - start} bars, exact 100-bin distributions"
        + ("" if dev.type == "cuda" else "; every predict row on 1 CPU thread"))
    if (1, "bfloat16") in timers:
        row("predict", "bfloat16 / float32, exact", str(Ratio.of(speed[mode_label(1, "bfloat16")], speed[default])),
            "forecasts/s ratio, own context each")
    else:
        row("predict", "bfloat16 / float32, exact", "skipped",
            f"{'this GPU' if dev.type == 'cuda' else 'this CPU'} has no native bfloat16 (no AMX or AVX-512 BF16), "
            "where it runs ~30x slower; --precision auto picks float32 here")
    best = max(speed, key=lambda label: Ratio.of(speed[label], naive_speed).median)
    row("predict", "fastest batched / per-bar generate()", str(Ratio.of(speed[best], naive_speed)),
        f"{best}; target >= 50x")


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


def bench_backtest(n: int, pairs: int) -> None:
    """The LLM-signal strategy against a bare strategy with the same rule, feed, costs and analyzers."""
    bars = loaded_bars(n)
    forecasts = pd.DataFrame({"forecast": bars["close"] * np.exp(np.random.default_rng(1).normal(0, 1e-4, n)),
                              "p_up": 0.5}, index=bars.index)
    frame = signal_frame(bars, forecasts)
    cpu = torch.device("cpu")
    seconds = alternate({"signal": lambda: timed(lambda: run_backtest(frame, ThresholdStrategy), cpu),
                         "plain": lambda: timed(lambda: run_backtest(frame, PlainThreshold), cpu)}, pairs)
    row("backtest", f"{n:,} bars: LLM-signal strategy, bars/s", median_range([n / s for s in seconds["signal"]]),
        "ThresholdStrategy via decide()")
    row("backtest", f"{n:,} bars: plain backtrader strategy, bars/s", median_range([n / s for s in seconds["plain"]]),
        "same rule in a bare next()")
    row("backtest", f"{n:,} bars: LLM-signal overhead", str(Ratio.of(seconds["signal"], seconds["plain"])),
        "seconds ratio; target <= 1.10x")


# -- end to end and scaling ---------------------------------------------------------------------------------------

def bench_end_to_end(args: tuple[str, ...]) -> None:
    """Wall time of ``llmsignal run`` in a fresh registry, its stages from timings.json and its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "llmsignal", "run", *args, "--registry", f"{tmp}/reg",
                                  "--out", f"{tmp}/out"], cwd=ROOT, stderr=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL)
        peak = _peak_rss_mb(child)
        if child.returncode:
            raise SystemExit(f"llmsignal run {' '.join(args)} failed with exit code {child.returncode}")
        wall = time.perf_counter() - began
        stages = json.loads(Path(f"{tmp}/out/timings.json").read_text())
    label = " ".join(["llmsignal run", *args])
    row("end-to-end", f"{label}: wall seconds", f"{wall:.0f}", f"peak RSS {peak:,.0f} MB; one run, not a ratio")
    for stage, spent in stages.items():
        row("end-to-end", f"{label}: {stage}", f"{spent:.1f} s")


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


def bench_scaling(entry, sizes: Sequence[int]) -> None:
    """How prediction (exact, 16 a window) and backtest time grow with the number of bars: one run each."""
    exact, shared = Predictor.from_entry(entry), Predictor.from_entry(entry, forecasts_per_pass=16)
    cpu = torch.device("cpu")
    for n in sizes:
        bars = loaded_bars(n, seed=n)
        timers = [PredictTimer(p, bars, cpu) for p in (exact, shared)]
        spent = [timer() for timer in timers]
        frame = signal_frame(bars, timers[1].last)
        spent.append(timed(lambda frame=frame: run_backtest(frame, ThresholdStrategy), cpu))
        row("scaling", f"{n:,} bars: predict exact / 16 a window / backtest, s",
            " / ".join(f"{s:.1f}" for s in spent), ", ".join(f"{n / s:,.0f}" for s in spent) + " bars/s")


def bench(args: argparse.Namespace, dev: torch.device, beside: subprocess.Popen | None) -> list[str]:
    """Every row, in order; returns the table's header lines."""
    plan, peaks, began = Plan.make(args.quick, args.pairs), Peaks(dev), scheduler_times()
    header = machine_lines(dev, beside)
    for line in header:
        print(line, file=sys.stderr)
    row("machine", "float32 matmul peak at start, GFLOP/s", f"{peaks.measure('float32') / 1e9:,.1f}",
        header[0].split("; ", 2)[-1])
    if native_bfloat16(dev):
        row("machine", "bfloat16 matmul peak at start, GFLOP/s", f"{peaks.measure('bfloat16') / 1e9:,.1f}",
            "native bfloat16")
    base = load_base("embedded")
    bench_train_stage(base, plan, peaks)
    bench_budget_stage(base, plan, peaks)
    bench_precision_steps(base, plan, dev)
    bench_train_speeds(base, plan, peaks, dev)
    with tempfile.TemporaryDirectory() as tmp:
        bars = loaded_bars(plan.predict_bars)
        with contextlib.redirect_stderr(io.StringIO()):
            entry, _ = train_entry(split_bars(bars), base, make_method("lora"), Registry(tmp), "bench-lora",
                                   TrainConfig(steps=2, batch_size=4), "synthetic")
        bench_prediction(entry, bars, plan, dev)
        if dev.type == "cuda":
            row("backtest", "backtest, scaling and end-to-end rows", "skipped", "CPU-only: run without --device")
        else:
            for n in plan.backtest_bars:
                bench_backtest(n, plan.pairs)
            bench_scaling(entry, plan.scaling_bars)
    if dev.type != "cuda":
        for run_args in plan.end_to_end:
            bench_end_to_end(run_args)
    if beside:
        header[-1] += "; busy process " + ("still running at the end" if beside.poll() is None else "DIED EARLY")
    header[-1] += f"; load average at end {os.getloadavg()[0]:.2f}"
    waited = waited_share(began, scheduler_times())
    if waited is not None:
        row("machine", "waited for a core, share of runnable time", f"{waited:.0%}",
            "this process's threads over the run (schedstat; ended threads not counted): 0% is an idle machine")
    return [*header, *TABLE.peak_rows(peaks)]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer bars, steps and pairs: every row in minutes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model rows run")
    parser.add_argument("--beside-load", action="store_true",
                        help="run one CPU-bound process beside the benchmark for the whole run")
    parser.add_argument("--pairs", type=int, default=None, help="alternating pairs of every ratio (default 2 or 3)")
    args = parser.parse_args(argv)
    if args.pairs is not None and args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    dev = choose_device(args.device)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecations, once per model
    torch.manual_seed(0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or kill: stop --beside-load's process too
    with beside_load(args.beside_load) as beside:
        header = bench(args, dev, beside)
    loud = [line for line in header if line.startswith("!!!")]
    TABLE.print([line for line in header if not line.startswith("!!!")], loud)


if __name__ == "__main__":
    main()
