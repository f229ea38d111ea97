"""How the benchmarks measure: alternating pairs, per-pair ratios, matmul peaks, the machine and the table.

    from benchmarks.harness import Ratio, Table, alternate, timed

    table = Table()
    seconds = alternate({"a": lambda: timed(work_a, dev), "b": lambda: timed(work_b, dev)}, repeats=3)
    table.row("stage", "a / b", str(Ratio.of(seconds["a"], seconds["b"])))  # 2.84x (2.71–2.95, 3 pairs)

Every ratio is taken within a pair whose two sides ran back to back, so a busy moment slows one pair, not
the ratio; every share of peak is taken against a matmul peak measured right before it, and a run whose
peak moved by more than ``PEAK_VARIATION_LIMIT`` is flagged.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch

from llmsignal.finetune.methods import count_trainable
from llmsignal.finetune.precision import cpu_features, cpu_name, native_bfloat16

PEAK_VARIATION_LIMIT = 0.20  # a run whose matmul peak moved more than this (max/min - 1) is flagged
# --beside-load: one core's worth of pure-Python work, which ends by itself if the benchmark is killed
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


# -- pairs and ratios ----------------------------------------------------------------------------------------------

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


def alternate(measures: dict, repeats: int) -> dict:
    """Each measure in turn, ``repeats`` times (A, B, A, B, ...): sample ``i`` of every measure shares round ``i``.

    ``measures`` maps any key to a callable returning one sample; the result maps the same keys to their samples.
    """
    samples: dict = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            samples[name].append(measure())
    return samples


def median_range(values: Sequence[float], fmt: str = ",.0f") -> str:
    """``1,234 (1,100–1,300)``: a speed's median and range over its samples."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def share_of_peak(ratio: Ratio) -> str:
    """A speed as a share of the adjacent matmul peak; above 100% the measurement, not the model, is wrong."""
    over = sum(v > 1 for v in ratio.values)
    if over:
        return f"measurement error: {ratio.high:.0%} of peak ({over} of {len(ratio.values)} pairs above 100%)"
    return f"{ratio.percent()} of peak"


# -- timing and peaks ----------------------------------------------------------------------------------------------

def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(work: Callable[[], object], dev: torch.device) -> float:
    """Seconds ``work`` takes; on a GPU, the kernels queued before it are waited for before the clock starts and
    its own before it stops."""
    sync(dev)
    began = perf_counter()
    work()
    sync(dev)
    return perf_counter() - began


def matmul_peak(dev: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
                bursts: int = 3, seconds: float = 0.1) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the practical ceiling for dense training on ``dev``.

    The best of ``bursts`` bursts of at least ``seconds`` each, into one preallocated output: single short
    bursts of bfloat16 (AMX) matmuls vary by up to 2x on a quiet machine, the best of three far less.
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


def flop_per_token(model: torch.nn.Module) -> int:
    """Matmul FLOPs per token of one training step: forward (2) and input gradient (2) for every weight, weight
    gradient (2) only for trainable ones (6 x parameters would count weight gradients PEFT methods never compute,
    and put LoRA above 100% of peak)."""
    total = sum(p.numel() for p in model.parameters())
    return 4 * total + 2 * count_trainable(model)


# -- the machine ---------------------------------------------------------------------------------------------------

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


def choose_device(name: str) -> torch.device:
    """``--device``: cuda if torch sees one (else exit in one line); cpu hides any GPU from every stage."""
    if name == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA starts: device() in train/predict then says cpu
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit(f"benchmarks: --device cuda, but torch {torch.__version__} sees no CUDA device "
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


# -- the table -----------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """The run's rows (stage, measure, value, note), each printed to stderr as it comes and all at the end."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def row(self, stage: str, what: str, value: str, note: str = "") -> None:
        self.rows.append((stage, what, value, note))
        print(f"  {stage:<11} {what:<50} {value:>28}  {note}", file=sys.stderr, flush=True)

    def peak_rows(self, peaks: Peaks) -> list[str]:
        """One row per number format's peak over the run; returns the loud lines of any that varied > 20%."""
        loud = []
        for precision, samples in peaks.samples.items():
            variation = peaks.variation(precision)
            flagged = variation > PEAK_VARIATION_LIMIT
            self.row("machine", f"{precision} matmul peak over the run, GFLOP/s",
                     f"{median_range([s / 1e9 for s in samples], ',.1f')}",
                     f"{len(samples)} samples; varied {variation:.0%}"
                     + ("  << FLAGGED (> 20%)" if flagged else " (<= 20%)"))
            if flagged:
                loud.append(f"!!! FLAGGED: the {precision} matmul peak varied by {variation:.0%} across this run "
                            f"(limit {PEAK_VARIATION_LIMIT:.0%}): the machine's speed changed under the benchmark; "
                            "absolute speeds are unreliable, and so are ratios of work that contention hits unequally")
        return loud

    def print(self, header: Sequence[str], loud: Sequence[str]) -> None:
        """The header lines, any loud lines, then the rows in aligned columns (stdout); loud lines again on stderr."""
        width = max(len(r[1]) for r in self.rows)
        value_width = max(len(r[2]) for r in self.rows)
        print()
        for line in [*header, *loud]:
            print(line)
        flag = "  [FLAGGED: peak varied > 20%]" if loud else ""
        print(f"\n{'stage':<11} {'measure':<{width}} {'value':>{value_width}}  note{flag}")
        for stage, what, value, note in self.rows:
            print(f"{stage:<11} {what:<{width}} {value:>{value_width}}  {note}")
        for line in loud:
            print(line, file=sys.stderr)
