"""Which number format the model runs in, chosen for the machine it runs on.

    >>> resolve_precision("float32").name
    'float32'
    >>> resolve_precision("auto").name in ("float32", "bfloat16")
    True

bfloat16 is fast only where the hardware computes it natively: AMX or AVX-512 BF16 on a CPU, or a GPU
that supports it. Elsewhere torch emulates it, and a CPU with AVX2 alone runs a bfloat16 forecast about
30 times slower than float32. So ``bfloat16`` falls back to float32 there (with a one-line note), and
``auto`` picks bfloat16 only on a CPU where it is native. On a GPU ``auto`` keeps float32: the embedded
base and GPT-2 small at this project's batch sizes leave an H200 waiting on kernel launches, and
autocast's extra casts made a training step 6-30% slower and a forecast 14% slower there.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bfloat16")


class PrecisionError(ValueError):
    """A precision this project does not know."""


@dataclass(frozen=True)
class Precision:
    name: str  # what runs: "float32" or "bfloat16"
    requested: str
    note: str = ""  # why ``name`` differs from ``requested``, or what auto chose and why

    @property
    def bfloat16(self) -> bool:
        return self.name == "bfloat16"

    def describe(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


def device() -> torch.device:
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
    probes = {"AVX2": "_is_avx2_supported", "AVX-512": "_is_avx512_supported",
              "AVX-512 BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}
    return [name for name, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]


def native_bfloat16(dev: torch.device | None = None) -> bool:
    """True where bfloat16 matmuls run in hardware: AMX or AVX-512 BF16 on a CPU, bf16 support on a GPU."""
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
    if native_bfloat16(dev):
        return Precision("bfloat16", requested, f"auto: {where} computes bfloat16 natively"
                         if requested == "auto" else "")
    if requested == "auto":
        return Precision("float32", requested, f"auto: {where} has no native bfloat16")
    return Precision("float32", requested, f"bfloat16 requested, but {where} has no native bfloat16 "
                                           "(AMX or AVX-512 BF16), where it runs far slower: float32 instead")


def autocast(precision: Precision | str, dev: torch.device | None = None) -> torch.autocast:
    """The autocast context for ``precision`` (a no-op for float32)."""
    name = precision.name if isinstance(precision, Precision) else precision
    return torch.autocast((dev or device()).type, dtype=torch.bfloat16, enabled=name == "bfloat16")
