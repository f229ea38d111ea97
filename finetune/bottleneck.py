"""Bottleneck adapters inside every GPT-2 block, the base frozen: Pfeiffer, Houlsby and parallel.

    >>> from llmsignal.finetune.base import load_base
    >>> model = load_base().model
    >>> add_bottlenecks(model, BottleneckConfig(placement="pfeiffer", reduction_factor=16))
    19248

An adapter is ``x + up(relu(down(x)))``: a down-projection of the block's width ``d`` to
``d / reduction_factor`` dimensions, a non-linearity, and an up-projection back to ``d``.

**Why up-project right after down-projecting?** The adapter's output is *added* to a hidden state
of width ``d``, so it has to come back to that width; the up-projection carries no new information
(its rank is at most the bottleneck's), it is what lets a small update live in the block's own
space. Its weights start at zero, so at the first step every adapter is the identity and training
begins from exactly the pretrained model. The cost of the detour is what the comparison reports:
``2 * d * d / reduction_factor`` weights plus biases per adapter, time, memory and latency.

Placements (Pfeiffer et al. 2020; Houlsby et al. 2019; He et al. 2022):

- ``pfeiffer``: one adapter on the output of each block's feed-forward, before its residual add;
- ``houlsby``: one on the attention output and one on the feed-forward output;
- ``parallel``: one beside the feed-forward, reading its input, its output scaled by ``scaling``
  and added to the feed-forward's;
- ``attention``: one on the attention output only (an ablation: Houlsby's first half).

The other fields are the knobs ``benchmarks/adapter_ablation.py`` varies: ``init`` ("zero": the down
projection drawn at std 0.01 and the up projection at zero; "lora": the down projection drawn like
LoRA's A, Kaiming-uniform, the up projection still zero, so training still starts from the base),
``activation`` (relu, gelu or identity), ``layer_norm`` (the adapter normalises its own input) and
``last_blocks`` (adapters in only the last blocks; 0 puts them in every block).

The adapters are ordinary submodules of each block (``transformer.h.<i>.bottleneck_*``), attached
with forward hooks, so the base's own weights keep their names and stay untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

PLACEMENTS = ("pfeiffer", "houlsby", "parallel", "attention")
INITS = ("zero", "lora")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}


@dataclass(frozen=True)
class BottleneckConfig:
    placement: str = "pfeiffer"
    reduction_factor: int = 16
    scaling: float = 1.0  # the parallel adapter's output multiplier (4.0 in He et al.)
    init: str = "zero"
    activation: str = "relu"
    layer_norm: bool = False
    last_blocks: int = 0

    def __post_init__(self) -> None:
        for name, value, allowed in (("placement", self.placement, PLACEMENTS), ("init", self.init, INITS),
                                     ("activation", self.activation, tuple(ACTIVATIONS))):
            if value not in allowed:
                raise ValueError(f"unknown bottleneck {name} {value!r}; use one of {', '.join(allowed)}")
        if self.reduction_factor < 1:
            raise ValueError(f"reduction_factor must be at least 1, got {self.reduction_factor}")
        if self.last_blocks < 0:
            raise ValueError(f"last_blocks must be 0 (every block) or more, got {self.last_blocks}")


class Bottleneck(nn.Module):
    """``up(act(down(x)))``; with ``up`` at zero it adds nothing until trained."""

    def __init__(self, width: int, size: int, config: BottleneckConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if config.layer_norm else nn.Identity()
        self.down = nn.Linear(width, size)
        self.act = ACTIVATIONS[config.activation]()
        self.up = nn.Linear(size, width)
        self.scaling = config.scaling
        if config.init == "lora":  # peft's LoRA A: Kaiming-uniform with a = sqrt(5), nn.Linear's own default
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        else:
            nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(self.norm(x)))) * self.scaling

    def after(self, module: nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple:
        """Forward hook: the sublayer's output plus the adapter of it (attention returns a tuple)."""
        if isinstance(output, tuple):
            return (output[0] + self(output[0]), *output[1:])
        return output + self(output)

    def beside(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: the sublayer's output plus the adapter of the sublayer's input."""
        return output + self(inputs[0])


def add_bottlenecks(model: nn.Module, config: BottleneckConfig) -> int:
    """Freeze ``model`` (a GPT-2 causal LM) and add trainable adapters to each block; returns their parameters."""
    for param in model.parameters():
        param.requires_grad_(False)
    width = model.config.n_embd
    size = max(1, width // config.reduction_factor)
    added = 0
    blocks = list(model.transformer.h)
    for block in blocks[-config.last_blocks:] if config.last_blocks else blocks:
        if config.placement in ("pfeiffer", "houlsby"):
            block.bottleneck_ffn = Bottleneck(width, size, config)
            block.mlp.register_forward_hook(block.bottleneck_ffn.after)
            added += _count(block.bottleneck_ffn)
        if config.placement in ("houlsby", "attention"):
            block.bottleneck_attn = Bottleneck(width, size, config)
            block.attn.register_forward_hook(block.bottleneck_attn.after)
            added += _count(block.bottleneck_attn)
        if config.placement == "parallel":
            block.bottleneck_ffn = Bottleneck(width, size, config)
            block.mlp.register_forward_hook(block.bottleneck_ffn.beside)
            added += _count(block.bottleneck_ffn)
    return added


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
