"""The training loop: random windows of digit text, next-token loss, cost recorded.

Every method gets the same windows in the same order for a given seed, the same
step budget and the same batch size; only its learning rate is its own.

``TrainStep`` is the one training step, which ``train()`` and the benchmarks take. Dropout is off while
fine-tuning (drawing its masks costs a quarter of a CPU step, and attention dropout keeps the fused
attention kernel from running); under bfloat16 the matmuls run in bfloat16 autocast while attention
stays in float32 (its bfloat16 backward on CPU is 4x slower than float32's).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import count_trainable
from llmsignal.finetune.precision import autocast, device


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200  # the budget: every step is taken, or (with eval_every) the most early stopping may take
    batch_size: int = 16
    window: int = 49  # values per training window: context + the value to predict
    seed: int = 0
    warmup: int = 10
    weight_decay: float = 0.0
    checkpoint_every: int = 50
    dropout: float | None = 0.0  # None keeps the model's own rates (GPT-2's 0.1), as pretraining does
    precision: str = "float32"  # "bfloat16": autocast, on a machine that computes it natively (see precision.py)
    eval_every: int = 0  # >0: validation loss every this many steps, early stopping, the best weights kept
    patience: int = 3  # evaluations without improvement before early stopping ends the training
    min_delta: float = 1e-3  # the validation-loss fall (nats per token) that counts as an improvement
    lr_factors: tuple[float, ...] = (1.0,)  # the learning rates a search tries, as multiples of the method's own
    probe_steps: int = 0  # >0: every rate trains this far, and only the best continues until early stopping
    schedule: str = "cosine"  # after warmup: "cosine" falls to 0.1 x lr at `steps`; "constant" holds (for early
    # stopping, where the step training ends at is not known in advance)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    trainable_params: int
    train_seconds: float
    peak_memory_mb: float
    final_loss: float
    val_loss: float
    tokens_per_second: float
    loss_history: list[float]  # the training loss of every step, for loss curves
    steps_used: int = 0  # steps taken (fewer than the budget when early stopping ended the training)
    best_step: int = 0  # the step whose weights were kept
    val_curve: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, validation loss)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where torch has one: on 124M weights its step is ~4x cheaper than the default."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


class TrainStep:
    """The training step: the next-token loss of a batch under the config's precision, backward, gradients
    clipped to norm 1, one AdamW step (fused where torch has the kernel). ``train()`` takes it, and so do
    the benchmarks.

    Building it puts the model on ``dev`` in training mode with the config's dropout (``None`` keeps the
    model's own rates) and makes the optimizer of its trainable weights; inside ``with step:`` attention
    runs in float32 while the precision is bfloat16.

        with TrainStep(model, config, lr) as step:
            loss = step(ids)   # ids: a batch of token windows on step.dev
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, lr: float, dev: torch.device | None = None) -> None:
        self.dev = dev or device()
        self.model, self.precision = model.to(self.dev).train(), config.precision
        if config.dropout is not None:
            set_dropout(model, config.dropout)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, lr, config.weight_decay) if self.params else None
        self._attention: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> TrainStep:
        self._attention = float32_attention(self.model, self.precision)
        self._attention.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        attention, self._attention = self._attention, None
        if attention is not None:
            attention.__exit__(*exc)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """One step on ``ids``; the loss, detached."""
        with autocast(self.precision, self.dev):
            loss = self.model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def sample_windows(bins: np.ndarray, window: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random windows of ``window`` consecutive bins."""
    if len(bins) < window:
        raise ValueError(f"{len(bins)} returns are fewer than one training window of {window}")
    starts = rng.integers(0, len(bins) - window + 1, size=count)
    return np.stack([bins[s:s + window] for s in starts])


class EarlyStopping:
    """Keeps the weights of the best validation loss; says stop after ``patience`` evaluations that do not beat
    it by ``min_delta`` (noise-sized gains on a flat curve would otherwise keep a hopeless training going)."""

    def __init__(self, patience: int, min_delta: float = 0.0, state: dict | None = None) -> None:
        self.patience, self.min_delta = patience, min_delta
        state = state or {"best": float("inf"), "best_step": 0, "waited": 0, "curve": [], "weights": {}}
        self.best, self.best_step, self.waited = state["best"], state["best_step"], state["waited"]
        self.curve, self.weights = [tuple(point) for point in state["curve"]], state["weights"]

    def observe(self, model: torch.nn.Module, step: int, seconds: float, val_loss: float) -> bool:
        """Record the validation loss at ``step``; True when training should stop."""
        self.curve.append((step, seconds, val_loss))
        if val_loss < self.best - self.min_delta:
            self.best, self.best_step, self.waited = val_loss, step, 0
            self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.weights, strict=False)

    def state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "waited": self.waited,
                "curve": [list(point) for point in self.curve], "weights": self.weights}


def train(model: torch.nn.Module, table: TokenTable, train_bins: list[np.ndarray], val_bins: list[np.ndarray],
          config: TrainConfig, lr: float, desc: str = "train",
          checkpoint: Callable[[int, dict], None] | None = None, resume: dict | None = None,
          until: int | None = None) -> TrainResult:
    """Train ``model``'s trainable weights on windows drawn from the series in ``train_bins``.

    With ``config.eval_every`` the validation loss (on ``val_bins`` only) is measured before the first
    step and every ``eval_every`` steps; training stops after ``patience`` measurements without a new best,
    and the best weights are put back. ``checkpoint(step, state)`` is called every
    ``config.checkpoint_every`` steps with what ``resume`` needs to continue from that step, and at
    ``until``, where training pauses (the weights as they are, not the best) to be resumed later.
    """
    dev = device()
    train_step = TrainStep(model, config, lr, dev)
    params, optimizer = train_step.params, train_step.optimizer
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    series = [b for b in train_bins if len(b) >= config.window]
    weights = np.array([len(b) for b in series], dtype=float)
    schedule = learning_rate(config, lr)
    start, stopping = 0, EarlyStopping(config.patience, config.min_delta,
                                                 resume and resume.get("early_stopping"))
    if resume:
        model.load_state_dict(resume["model"], strict=False)
        optimizer.load_state_dict(resume["optimizer"])
        rng.bit_generator.state = resume["rng"]
        torch.set_rng_state(resume["torch_rng"])
        start = resume["step"]
    history = list(resume.get("losses", [])) if resume else []
    loss_value, tokens, done, stopped = float("nan"), 0, start, False
    memory = PeakMemory(dev)
    began = time.perf_counter() - (resume.get("seconds", 0.0) if resume else 0.0)

    def snapshot(step: int) -> dict:
        return {"model": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "step": step, "losses": list(history),
                "seconds": time.perf_counter() - began, "early_stopping": stopping.state()}

    end = min(until or config.steps, config.steps) if params else start
    # with early stopping the end is not known in advance: the bar counts steps against the cap, with no fake ETA
    steps = range(start, end)
    with memory, train_step, tqdm(
            iter(steps) if config.eval_every else steps, unit="step", initial=start, leave=False,
            desc=desc + (f" (at most {config.steps} steps)" if config.eval_every else ""),
            total=None if config.eval_every else config.steps) as bar:
        if config.eval_every and params and start == 0:
            stopping.observe(model, 0, 0.0, _validation_loss(model, table, val_bins, config))
        for step in bar:
            pick = rng.choice(len(series), size=config.batch_size, p=weights / weights.sum())
            batch = np.stack([sample_windows(series[i], config.window, 1, rng)[0] for i in pick])
            ids = table.ids(batch).to(dev)
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            loss_value, tokens, done = train_step(ids).item(), tokens + ids.numel(), step + 1
            history.append(loss_value)
            elapsed = time.perf_counter() - began
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
            if config.eval_every and done % config.eval_every == 0 and stopping.observe(
                    model, done, elapsed, _validation_loss(model, table, val_bins, config)):
                stopped = True
                break
            if checkpoint and done % config.checkpoint_every == 0 and done < end:
                checkpoint(done, snapshot(done))
    paused = bool(params) and not stopped and done < config.steps
    if paused and checkpoint:
        checkpoint(done, snapshot(done))
    if stopping.weights and not paused:
        stopping.restore(model)
    seconds = time.perf_counter() - began
    val_loss = stopping.best if paused and stopping.weights else evaluate(model, table, val_bins, config)
    return TrainResult(
        trainable_params=count_trainable(model), train_seconds=seconds, peak_memory_mb=memory.peak_mb,
        final_loss=loss_value, val_loss=val_loss,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0, loss_history=history,
        steps_used=done, best_step=stopping.best_step if stopping.weights else done, val_curve=stopping.curve,
    )


def _validation_loss(model: torch.nn.Module, table: TokenTable, bins: list[np.ndarray], config: TrainConfig) -> float:
    loss = evaluate(model, table, bins, config)
    model.train()
    return loss


@torch.no_grad()
def evaluate(model: torch.nn.Module, table: TokenTable, bins: list[np.ndarray], config: TrainConfig) -> float:
    """Mean next-token loss over non-overlapping windows of the held-out series."""
    windows = [b[s:s + config.window] for b in bins for s in range(0, len(b) - config.window + 1, config.window)]
    if not windows:
        return float("nan")
    model.eval()
    dev = device()
    losses = []
    for i in range(0, len(windows), 64):
        ids = table.ids(np.stack(windows[i:i + 64])).to(dev)
        losses.append(model(input_ids=ids, labels=ids).loss.item() * len(ids))
    return float(sum(losses) / len(windows))


def set_dropout(model: torch.nn.Module, rate: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def _sdpa_float32(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    with torch.autocast(query.device.type, enabled=False):
        return sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)


AttentionInterface.register("sdpa_float32", _sdpa_float32)


@contextlib.contextmanager
def float32_attention(model: torch.nn.Module, precision: str):
    """Attention in float32 while ``precision`` is bfloat16; the model's own attention again afterwards."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = getattr(inner.config, "_attn_implementation", None)
    if precision != "bfloat16" or own != "sdpa":
        yield
        return
    inner.set_attn_implementation("sdpa_float32")
    try:
        yield
    finally:
        inner.set_attn_implementation(own)


SCHEDULES = ("cosine", "constant")


def learning_rate(config: TrainConfig, lr: float) -> Callable[[int], float]:
    """The rate at each step under ``config.schedule``."""
    warmup, steps = config.warmup, config.steps
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; use one of {', '.join(SCHEDULES)}")

    def at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        if config.schedule == "constant":
            return lr
        progress = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    return at


class PeakMemory:
    """Peak memory a block of work adds: CUDA allocator peak on a GPU, resident set growth on a CPU."""

    def __init__(self, dev: torch.device, interval: float = 0.05) -> None:
        self.dev, self.interval, self.peak_mb = dev, interval, 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)
            self._start = torch.cuda.memory_allocated(self.dev)
        else:
            _return_free_memory()  # so that memory freed by an earlier job is not silently reused and missed
            self._start = _rss_bytes()
            self._peak = self._start
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.dev)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.peak_mb = (peak - self._start) / 2**20


def _return_free_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS growth is then a lower bound
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * 4096
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
