"""Which number format the model runs in, chosen for the machine it runs on.

    >>> resolve_precision("float32").name
    'float32'
    >>> resolve_precision("auto").name in ("float32", "bfloat16")
    True

bfloat16 is fast only where the hardware computes it natively: AMX or AVX-512 BF16 on a CPU, or a GPU
that supports it. Elsewhere torch emulates it, and a CPU with AVX2 alone runs a bfloat16 forecast about
30 times slower than float32. So ``bfloat16`` falls back to float32 there (with a one-line note). Even
where it is native it need not pay for these small models (on an AMD EPYC with AVX-512 BF16 a matmul ran
4x faster and a whole training no faster), so on such a CPU ``auto`` times a training step and a forecast
in both formats once (cached per CPU model and torch version) and takes the faster. On a GPU ``auto`` keeps
float32: the embedded base and GPT-2 small at this project's batch sizes leave an H200 waiting on kernel
launches, and autocast's extra casts made a training step 6-30% slower and a forecast 14% slower there.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model runs: `llmsignal --help` should not wait for it
    import torch

PRECISIONS = ("auto", "float32", "bfloat16")


class PrecisionError(ValueError):
    """A precision this project does not know."""


@dataclass(frozen=True)
class Precision:
    name: str  # what runs: "float32" or "bfloat16"
    requested: str
    note: str = ""  # why ``name`` differs from ``requested``, or what auto chose and why
    timings: dict[str, float] | None = None  # auto's probe: ms per training step and forecast in each format

    @property
    def bfloat16(self) -> bool:
        return self.name == "bfloat16"

    def describe(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


def device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_name() -> str:
    """The CPU's model name, for every figure measured on it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector extensions that decide float32 and bfloat16 speed, as torch detects them."""
    import torch

    probes = {"AVX2": "_is_avx2_supported", "AVX-512": "_is_avx512_supported",
              "AVX-512 BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}
    return [name for name, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]


def native_bfloat16(dev: torch.device | None = None) -> bool:
    """True where bfloat16 matmuls run in hardware: AMX or AVX-512 BF16 on a CPU, bf16 support on a GPU."""
    import torch

    dev = dev or device()
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"AMX", "AVX-512 BF16"} & set(cpu_features()))


def resolve_precision(requested: str, dev: torch.device | None = None) -> Precision:
    """What ``requested`` ("auto", "float32" or "bfloat16") means on this machine."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested == "float32":
        return Precision("float32", requested)
    dev = dev or device()
    where = "this GPU" if dev.type == "cuda" else f"this CPU ({cpu_name()})"
    if requested == "auto" and dev.type == "cuda":  # measured on an H200 in benchmarks/run.py --device cuda
        return Precision("float32", requested, "auto: on a GPU these models are too small for bfloat16 to pay "
                                               "(its casts cost more than its matmuls save)")
    if requested == "auto" and native_bfloat16(dev):
        timings = measured_speeds()
        faster = "bfloat16" if timings["bfloat16"] < timings["float32"] else "float32"
        return Precision(faster, requested, f"auto: measured on {where}, a training step and a forecast took "
                                            f"{timings['float32']:.1f} ms in float32 and {timings['bfloat16']:.1f} ms "
                                            f"in bfloat16", timings)
    if native_bfloat16(dev):
        return Precision("bfloat16", requested)
    if requested == "auto":
        return Precision("float32", requested, f"auto: {where} has no native bfloat16")
    return Precision("float32", requested, f"bfloat16 requested, but {where} has no native bfloat16 "
                                           "(AMX or AVX-512 BF16), where it runs far slower: float32 instead")


PROBE_SHAPE = {"batch": 16, "tokens": 96, "n_embd": 192, "n_layer": 4, "n_head": 4}  # the embedded base at work


def probe_cache() -> Path:
    """Where auto's measurements are kept: one per CPU model and torch version (``LLMSIGNAL_CACHE`` moves it)."""
    return Path(os.environ.get("LLMSIGNAL_CACHE", Path.home() / ".cache" / "llmsignal")) / "precision.json"


@functools.cache
def measured_speeds() -> dict[str, float]:
    """Milliseconds of one training step plus one forecast pass of a model of the embedded base's shape, in
    float32 and in bfloat16 autocast, on this CPU: measured once (a few seconds), then read from the cache.

    A CPU may report bfloat16 instructions and still run these small models slower in it; the flag alone
    cannot say, so auto asks the clock.
    """
    import torch

    key = f"{cpu_name()} | torch {torch.__version__} | {json.dumps(PROBE_SHAPE, sort_keys=True)}"
    path = probe_cache()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached.get(key), dict) and {"float32", "bfloat16"} <= set(cached[key]):
        return {k: float(cached[key][k]) for k in ("float32", "bfloat16")}
    measured = {name: _step_and_forecast_ms(name) for name in ("float32", "bfloat16")}
    cached[key] = measured
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2))
        os.replace(tmp, path)
    except OSError:  # a read-only home: measure again next time
        pass
    return measured


def _step_and_forecast_ms(name: str, repeats: int = 5) -> float:
    """The median over ``repeats`` of one training step and one forecast pass, after a warm-up of each."""
    import time

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = PROBE_SHAPE
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=shape["tokens"], n_embd=shape["n_embd"],
                                       n_layer=shape["n_layer"], n_head=shape["n_head"], resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, 64, (shape["batch"], shape["tokens"]))
    cpu = torch.device("cpu")
    times = []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        with autocast(name, cpu):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad(), autocast(name, cpu):
            model(input_ids=ids)
        times.append((time.perf_counter() - began) * 1e3)
    return float(sorted(times[1:])[repeats // 2])


def autocast(precision: Precision | str, dev: torch.device | None = None) -> torch.autocast:
    """The autocast context for ``precision`` (a no-op for float32)."""
    import torch

    name = precision.name if isinstance(precision, Precision) else precision
    return torch.autocast((dev or device()).type, dtype=torch.bfloat16, enabled=name == "bfloat16")
