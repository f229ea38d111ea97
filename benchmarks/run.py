"""How fast is each stage, and how far from the machine's limit? Prints one table a noisy machine cannot fool.

    python benchmarks/run.py                 # every row (about 30 minutes on 2 quiet cores)
    python benchmarks/run.py --quick         # fewer bars, steps and pairs (about 8 minutes on 2 quiet cores)
    python benchmarks/run.py --beside-load   # the same, beside one CPU-bound process started for the run
    python benchmarks/run.py --device cuda   # the model rows on a GPU

Every ratio is measured in alternating repeats (A, B, A, B, ...) and reported as the median and range of
the per-pair ratios, e.g. ``2.84x (2.71–2.95, 3 pairs)``: both sides of a pair ran back to back, so a
busy moment slows one pair, not the ratio. Every "% of peak" is taken against a matmul peak measured
right before it; a run whose peak itself varied by more than 20% is flagged. Load that slows the two
sides of a ratio unequally still moves it: the table gives the load average and the share of its time
the benchmark waited for a core. Rows are explained in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llmsignal.backtests.engine import run_backtest
from llmsignal.data import DEFAULT_SOURCE, load_bars
from llmsignal.finetune.bars import Split, split_bars
from llmsignal.finetune.base import FUSED_GELU, Base, load_base
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import count_trainable, get_model, make_method
from llmsignal.finetune.precision import autocast, cpu_features, cpu_name, native_bfloat16
from llmsignal.finetune.train import PeakMemory, TrainConfig, float32_attention, make_optimizer, set_dropout
from llmsignal.models.entries import entry_registry, train_entry
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Registry
from llmsignal.run import DEFAULT_METHODS, RunConfig
from llmsignal.strategies import ThresholdStrategy, signal_frame

ROOT = Path(__file__).resolve().parents[1]
PEAK_VARIATION_LIMIT = 0.20  # a run whose matmul peak moved more than this (max/min - 1) is flagged
# --beside-load: one core's worth of pure-Python work, which ends by itself if the benchmark is killed
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"
ROWS: list[tuple[str, str, str, str]] = []


def row(stage: str, what: str, value: str, note: str = "") -> None:
    """One line of the table, printed at once (stderr) and again in the final table (stdout)."""
    ROWS.append((stage, what, value, note))
    print(f"  {stage:<11} {what:<50} {value:>28}  {note}", file=sys.stderr, flush=True)


# -- measuring: alternation, paired ratios, peaks ---------------------------------------------------------------

@dataclass(frozen=True)
class Ratio:
    """Per-pair ratios of two alternating measurements: the median and range, never one lucky sample."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, numerators: Sequence[float], denominators: Sequence[float]) -> Ratio:
        """``numerators[i] / denominators[i]`` for each pair ``i`` (both sides measured in the same round)."""
        if len(numerators) != len(denominators) or not numerators:
            raise ValueError(f"ratios need pairs: {len(numerators)} against {len(denominators)} samples")
        return cls(tuple(n / d for n, d in zip(numerators, denominators, strict=True)))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def _spread(self, low: str, high: str) -> str:
        pairs = f"{len(self.values)} pair{'s' if len(self.values) > 1 else ''}"
        return f"({pairs})" if len(self.values) == 1 else f"({low}–{high}, {pairs})"

    def __str__(self) -> str:  # 2.84x (2.71–2.95, 3 pairs)
        return f"{self.median:.2f}x {self._spread(f'{self.low:.2f}', f'{self.high:.2f}')}"

    def percent(self) -> str:  # 64% (58–70%, 3 pairs)
        return f"{self.median:.0%} {self._spread(f'{self.low:.0%}'[:-1], f'{self.high:.0%}')}"


def alternate(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each measure in turn, ``repeats`` times (A, B, A, B, ...): sample ``i`` of every measure shares round ``i``."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            samples[name].append(measure())
    return samples


def share_of_peak(ratio: Ratio) -> str:
    """A speed as a share of the adjacent matmul peak; above 100% the measurement, not the model, is wrong."""
    over = sum(v > 1 for v in ratio.values)
    if over:
        return f"measurement error: {ratio.high:.0%} of peak ({over} of {len(ratio.values)} pairs above 100%)"
    return f"{ratio.percent()} of peak"


def median_range(values: Sequence[float], fmt: str = ",.0f") -> str:
    """``1,234 (1,100–1,300)``: a speed's median and range over its samples."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(work: Callable[[], object], dev: torch.device) -> float:
    """Seconds ``work`` takes; on a GPU, the kernels it queued are waited for on both sides."""
    sync(dev)
    began = time.perf_counter()
    work()
    sync(dev)
    return time.perf_counter() - began


def matmul_peak(dev: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
                bursts: int = 3, seconds: float = 0.1) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the practical ceiling for dense training on ``dev``.

    The best of ``bursts`` bursts of at least ``seconds`` each, into one preallocated output: on a 2-core
    VM a single short burst of bfloat16 (AMX) matmuls read anywhere from 1.1 to 2.1 TFLOP/s on a quiet
    machine, the best of three 0.1-s bursts 2.0 to 2.2.
    """
    size = size or (8192 if dev.type == "cuda" else 2048)
    a, b, out = (torch.randn(size, size, device=dev, dtype=dtype) for _ in range(3))
    once = timed(lambda: torch.matmul(a, b, out=out), dev)  # also the warm-up: allocation and kernel choice
    repeats = max(1, math.ceil(seconds / max(once, 1e-6)))
    best = min(timed(lambda: [torch.matmul(a, b, out=out) for _ in range(repeats)], dev) for _ in range(bursts))
    return 2 * size**3 * repeats / best


class Peaks:
    """Every matmul peak measured in the run, by number format, so that a run whose machine changed is flagged."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.samples: dict[str, list[float]] = {}

    def measure(self, precision: str = "float32") -> float:
        flops = matmul_peak(self.dev, getattr(torch, precision))
        self.samples.setdefault(precision, []).append(flops)
        return flops

    def variation(self, precision: str) -> float:
        """max / min - 1 over the run's samples of one number format."""
        samples = self.samples.get(precision, [])
        return max(samples) / min(samples) - 1 if samples else 0.0

    def flagged(self) -> list[str]:
        return [p for p in self.samples if self.variation(p) > PEAK_VARIATION_LIMIT]


def scheduler_times() -> tuple[int, int] | None:
    """Nanoseconds this process's threads have run, and waited runnable for a core (Linux schedstat)."""
    ran = waited = 0
    tasks = list(Path("/proc/self/task").glob("*/schedstat"))
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            on_cpu, queued, _ = task.read_text().split()
            ran, waited = ran + int(on_cpu), waited + int(queued)
    return (ran, waited) if tasks and ran else None


def waited_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The share of its runnable time the process spent waiting for a core between two ``scheduler_times``."""
    if not start or not end or end[0] + end[1] <= start[0] + start[1]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0] + end[1] - start[1])


# -- the run's plan and the machine ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How much of each row to run: ``--quick`` is a smoke test of every row, the default the figures."""

    pairs: int  # alternating pairs of every cheap ratio
    stage_pairs: int  # old/new pairs of the whole training stage
    stage_steps: int  # training steps per method in the stage rows (the default run: 200)
    speed_steps: int  # timed steps per model-speed sample
    step_rounds: int  # rounds of the step-level old/new alternation
    step_chunk: int  # steps per sample in it
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
            plan = cls(2, 2, 30, 4, 6, 2, 600, 40, ("full", "lora", "adapter"), ("full", "lora"), (1000,), (500, 1000),
                       (("--quick",),))
        else:
            plan = cls(3, 2, 200, 8, 10, 4, 2000, 120,
                       ("full", "lora", "adapter", "houlsby", "parallel", "prefix", "ia3", "ln", "bitfit"),
                       ("full", "lora", "adapter", "ia3"), (5000, 20_000), (1000, 5000, 20_000),
                       (("--quick",), ()), budget_stage=True)
        return replace(plan, pairs=pairs, stage_pairs=pairs) if pairs else plan


def choose_device(name: str) -> torch.device:
    """``--device``: cuda if torch sees one (else exit in one line); cpu hides any GPU from every stage."""
    if name == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA starts: device() in train/predict then says cpu
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit(f"benchmarks/run.py: --device cuda, but torch {torch.__version__} sees no CUDA device "
                         f"(built with CUDA {torch.version.cuda or 'none'}); run without --device for the CPU table")
    return torch.device("cuda")


def machine_lines(dev: torch.device, beside: subprocess.Popen | None) -> list[str]:
    """What the figures were measured on: CPU model and vector extensions, threads, device, load."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [f"CPU: {cpu_name()}; vector: {', '.join(cpu_features()) or 'none of AVX2/AVX-512/AMX'}; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cores} cores"]
    if dev.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda}), "
                     f"bfloat16 {'native' if native_bfloat16(dev) else 'not native'}")
    else:
        lines.append(f"device: cpu, bfloat16 {'native' if native_bfloat16(dev) else 'NOT native (emulated)'}")
    load = (f"BESIDE LOAD: one CPU-bound process (pid {beside.pid}) ran for the whole run" if beside
            else "no load added by the benchmark (other jobs may share the machine)")
    lines.append(f"{load}; load average at start {os.getloadavg()[0]:.2f}")
    return lines


@contextlib.contextmanager
def beside_load(enabled: bool) -> Iterator[subprocess.Popen | None]:
    """``--beside-load``: one busy process for the whole run, stopped at the end whatever happens."""
    if not enabled:
        yield None
        return
    child = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
    try:
        yield child  # the table's header says whether it still ran at the end
    finally:
        child.terminate()
        child.wait(timeout=30)


# -- training: the default run's stage, old settings against new ---------------------------------------------------

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


def stage_configs(steps: int) -> tuple[TrainConfig, TrainConfig]:
    """The default run's training settings before issue #22 (GPT-2's dropout, float32) and now."""
    new = replace(RunConfig().train_config(), steps=steps)
    return replace(new, dropout=None, precision="float32"), new


def flop_per_token(model: torch.nn.Module) -> int:
    """Matmul FLOPs per token of one training step: forward (2) and input gradient (2) for every weight, weight
    gradient (2) only for trainable ones. The usual 6 x parameters counts weight gradients that PEFT methods
    never compute, which let LoRA on GPT-2 small read above 100% of peak."""
    total = sum(p.numel() for p in model.parameters())
    return 4 * total + 2 * count_trainable(model)


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
    """Per (method, "old" | "new"): seconds of each pair, the loop's share of the adjacent peak, last val loss."""

    seconds: dict[tuple[str, str], list[float]]
    shares: dict[tuple[str, str], list[float]]
    val_loss: dict[tuple[str, str], float]

    def total(self, label: str, methods: Sequence[str]) -> list[float]:
        """The whole stage's seconds in each pair."""
        return [sum(spent) for spent in zip(*(self.seconds[m, label] for m in methods), strict=True)]


def measure_stage(split: Split, base: Base, methods: Sequence[str], configs: dict[str, TrainConfig], pairs: int,
                  peaks: Peaks) -> StageSamples:
    """Each method trained with each config in turn (old, new, old, new, ...), a matmul peak right before each."""
    for config in configs.values():  # warm-up: first-call allocations and kernel choices, not timed
        time_stage_entry(split, base, "lora", replace(config, steps=2))
    flop = {m: flop_per_token(get_model(base.model, make_method(m))) for m in methods}
    samples = StageSamples({}, {}, {})
    for pair in range(1, pairs + 1):
        for method in methods:  # the two samples of a pair run back to back
            for label, config in configs.items():
                peak = peaks.measure(config.precision)  # the peak of the format it trains in
                spent, cost = time_stage_entry(split, base, method, config)
                print(f"    train stage, pair {pair}/{pairs}: {method} {label} {spent:.1f} s", file=sys.stderr)
                samples.seconds.setdefault((method, label), []).append(spent)
                samples.shares.setdefault((method, label), []).append(flop[method] * cost["tokens_per_second"] / peak)
                samples.val_loss[method, label] = cost["val_loss"]
    return samples


def bench_train_stage(base: Base, plan: Plan, peaks: Peaks) -> None:
    """The default run's training stage (full, lora, adapter, scratch on EURUSD H1), old and new side by side."""
    run = RunConfig()
    old, new = stage_configs(plan.stage_steps)
    methods = stage_methods()
    got = measure_stage(stage_split(), base, methods, {"old": old, "new": new}, plan.stage_pairs, peaks)
    row("train", "stage settings: old", f"float32, dropout {base.model.config.resid_pdrop}",
        "the model's own dropout rates: TrainConfig(dropout=None, precision='float32')")
    row("train", "stage settings: new", f"{new.precision}, dropout {new.dropout}",
        f"RunConfig().train_config(): precision {run.number_format().describe()}")
    for m in methods:
        row("train", f"stage, {m}: old / new", str(Ratio.of(got.seconds[m, "old"], got.seconds[m, "new"])),
            f"{median_range(got.seconds[m, 'old'], '.1f')} / {median_range(got.seconds[m, 'new'], '.1f')} s; "
            f"loop at {share_of_peak(Ratio(tuple(got.shares[m, 'old'])))} (float32) / "
            f"{share_of_peak(Ratio(tuple(got.shares[m, 'new'])))} ({new.precision}); "
            f"val loss {got.val_loss[m, 'old']:.4f} / {got.val_loss[m, 'new']:.4f}")
    totals = {label: got.total(label, methods) for label in ("old", "new")}
    row("train", f"stage, all {len(methods)}: old / new seconds",
        f"{statistics.median(totals['old']):.1f} / {statistics.median(totals['new']):.1f}",
        f"{median_range(totals['old'], '.1f')} / {median_range(totals['new'], '.1f')} s; {', '.join(methods)}: "
        f"{plan.stage_steps} steps x {new.batch_size} windows of {new.window}, EURUSD H1")
    row("train", f"stage, all {len(methods)}: old / new (done-when >= 2x)", str(Ratio.of(totals["old"], totals["new"])),
        "the default `llmsignal run` training stage, old and new side by side")


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
    """A measure: ``steps`` training steps as ``llmsignal.finetune.train`` takes them (the config's dropout and
    precision, attention in float32 under bfloat16, fused AdamW, clipping) on one fixed batch, in seconds."""

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor, config: TrainConfig, dev: torch.device,
                 steps: int) -> None:
        self.model, self.ids, self.config, self.dev, self.steps = model.to(dev).train(), ids.to(dev), config, dev, steps
        if config.dropout is not None:  # None keeps the model's own rates, as train() does
            set_dropout(model, config.dropout)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, lr=1e-4)
        with PeakMemory(dev) as memory:
            self._run(1)  # the first step pays for allocation and the optimizer's state
        self.memory_mb = memory.peak_mb

    def _run(self, steps: int) -> None:
        with float32_attention(self.model, self.config.precision):
            for _ in range(steps):
                with autocast(self.config.precision, self.dev):
                    loss = self.model(input_ids=self.ids, labels=self.ids).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)

    def __call__(self) -> float:
        return timed(lambda: self._run(self.steps), self.dev)

    def tokens_per_second(self, seconds: float) -> float:
        return self.ids.numel() * self.steps / seconds


def bench_stage_steps(base: Base, plan: Plan, dev: torch.device) -> None:
    """The stage's training loop alone, old against new, alternating every few steps: load that shifts over
    minutes (and moves a whole ``train_entry``) hits both sides of each pair alike."""
    old, new = stage_configs(plan.stage_steps)
    methods = stage_methods()
    ids = random_ids(TokenTable(base.tokenizer), new.batch_size, new.window)
    measures = {(m, label): Stepper(get_model(base.model, make_method(m)), ids, config, dev, plan.step_chunk)
                for m in methods for label, config in (("old", old), ("new", new))}
    samples = alternate(measures, plan.step_rounds)
    for m in methods:
        row("train", f"steps, {m}: old / new", str(Ratio.of(samples[m, "old"], samples[m, "new"])),
            f"{median_range([s / plan.step_chunk for s in samples[m, 'old']], '.3f')} / "
            f"{median_range([s / plan.step_chunk for s in samples[m, 'new']], '.3f')} s a step")
    totals = {label: [sum(parts) for parts in zip(*(samples[m, label] for m in methods), strict=True)]
              for label in ("old", "new")}
    row("train", f"steps, all {len(methods)}: old / new", str(Ratio.of(totals["old"], totals["new"])),
        f"{plan.step_chunk} steps a sample, old and new of each method in turn, {plan.step_rounds} rounds")


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
    """float32 against bfloat16 alone (both without dropout), alternating: the choice ``--precision auto``
    makes, measured on this machine for a small and a large model."""
    if not native_bfloat16(dev):
        row("train", "float32 / bfloat16 steps", "skipped", "no native bfloat16 here: auto picks float32")
        return
    new = RunConfig().train_config()
    table = TokenTable(base.tokenizer)
    for label, model, batch, steps in (("embedded base", base.model, 16, plan.step_chunk),
                                       ("GPT-2 small (124M)", gpt2_small(), 4, 1)):
        ids = random_ids(table, batch, new.window)
        for m in ("full", "lora"):
            measures = {p: Stepper(get_model(model, make_method(m)), ids, replace(new, precision=p), dev, steps)
                        for p in ("float32", "bfloat16")}
            samples = alternate(measures, plan.pairs)
            row("train", f"{label}, {m}: float32 / bfloat16 step", str(Ratio.of(samples["float32"],
                                                                                 samples["bfloat16"])),
                f"{median_range([s / steps for s in samples['float32']], '.4f')} / "
                f"{median_range([s / steps for s in samples['bfloat16']], '.4f')} s a step, {batch}x{new.window}")


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
    for whichever thread a busy neighbour has displaced: beside one CPU-bound process the loop slowed 3.4x
    and the batched passes 2.6x, so their ratio moved from 2.4x to 3.1x (and to 5.4x in a whole run). On
    one thread a neighbour only takes turns, which slows both sides alike: 1.69x quiet, 1.48x beside load.
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


def synthetic_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0003,
                         "low": np.minimum(open_, close) * 0.9997, "close": close, "volume": 1.0},
                        index=pd.date_range("2015-01-01", periods=n, freq="h", name="timestamp"))


def bench_backtest(n: int, pairs: int) -> None:
    """The LLM-signal strategy against a bare strategy with the same rule, feed, costs and analyzers."""
    bars = synthetic_bars(n)
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
        bars = synthetic_bars(n, seed=n)
        timers = [PredictTimer(p, bars, cpu) for p in (exact, shared)]
        spent = [timer() for timer in timers]
        frame = signal_frame(bars, timers[1].last)
        spent.append(timed(lambda frame=frame: run_backtest(frame, ThresholdStrategy), cpu))
        row("scaling", f"{n:,} bars: predict exact / 16 a window / backtest, s",
            " / ".join(f"{s:.1f}" for s in spent), ", ".join(f"{n / s:,.0f}" for s in spent) + " bars/s")


# -- the table ----------------------------------------------------------------------------------------------------

def peak_rows(peaks: Peaks) -> list[str]:
    """One row per number format's peak over the run; the loud lines of any format that varied > 20%."""
    loud = []
    for precision, samples in peaks.samples.items():
        variation = peaks.variation(precision)
        flagged = variation > PEAK_VARIATION_LIMIT
        row("machine", f"{precision} matmul peak over the run, GFLOP/s",
            f"{median_range([s / 1e9 for s in samples], ',.1f')}",
            f"{len(samples)} samples; varied {variation:.0%}" + ("  << FLAGGED (> 20%)" if flagged else " (<= 20%)"))
        if flagged:
            loud.append(f"!!! FLAGGED: the {precision} matmul peak varied by {variation:.0%} across this run "
                        f"(limit {PEAK_VARIATION_LIMIT:.0%}): the machine's speed changed under the benchmark; "
                        "absolute speeds are unreliable, and so are ratios of work that contention hits unequally")
    return loud


def print_table(header: list[str], loud: list[str]) -> None:
    width = max(len(r[1]) for r in ROWS)
    value_width = max(len(r[2]) for r in ROWS)
    print()
    for line in [*header, *loud]:
        print(line)
    flag = "  [FLAGGED: peak varied > 20%]" if loud else ""
    print(f"\n{'stage':<11} {'measure':<{width}} {'value':>{value_width}}  note{flag}")
    for stage, what, value, note in ROWS:
        print(f"{stage:<11} {what:<{width}} {value:>{value_width}}  {note}")
    for line in loud:
        print(line, file=sys.stderr)


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
    bench_stage_steps(base, plan, dev)
    bench_precision_steps(base, plan, dev)
    bench_train_speeds(base, plan, peaks, dev)
    with tempfile.TemporaryDirectory() as tmp:
        bars = synthetic_bars(plan.predict_bars)
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
    return [*header, *peak_rows(peaks)]


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
    print_table([line for line in header if not line.startswith("!!!")], loud)


if __name__ == "__main__":
    main()
