"""Tuning methods: one config each, one entry point.

    >>> from llmsignal.finetune.base import load_base
    >>> method = make_method("lora", r=4)
    >>> model = get_model(load_base().model, method)   # the base, made trainable the way the method says
    >>> count_trainable(model)
    12288

LoRA, IA3, prefix tuning, prompt tuning and LN tuning come from ``peft``; the bottleneck adapters
(Pfeiffer, Houlsby, parallel) are this package's own ``bottleneck`` module, since peft has none;
``full``, ``bitfit``, ``scratch`` and ``zero-shot`` only choose which of the base's own weights
train. A new method is a new entry in ``METHODS``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import peft
import torch

from llmsignal.finetune.bottleneck import BottleneckConfig, add_bottlenecks


class MethodError(ValueError):
    """An unknown method or a hyper-parameter the method does not take."""


@dataclass(frozen=True)
class Method:
    """A tuning method: which weights train, and its hyper-parameters.

    Exactly one of ``peft_config`` (a peft config from the hyper-parameters), ``bottleneck`` (a
    ``BottleneckConfig`` from them) or ``trains`` (which of the base's parameters train, by name)
    is set for a method that trains; none for ``zero-shot``.
    """

    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    peft_config: Callable[..., peft.PeftConfig] | None = None
    bottleneck: Callable[..., BottleneckConfig] | None = None
    trains: Callable[[str], bool] | None = None
    reinitialise: bool = False
    mergeable: bool = False  # its weights fold into the base's for serving (LoRA, IA3)

    def with_params(self, **overrides: Any) -> Method:
        unknown = sorted(set(overrides) - set(self.params) - {"lr"})
        if unknown:
            takes = ", ".join(sorted(self.params)) or "no hyper-parameters"
            raise MethodError(f"method {self.name!r} takes no parameter {unknown[0]!r}; it takes: {takes} (and lr)")
        lr = _convert(self.name, "lr", overrides.pop("lr", self.lr), float)
        params = {k: _convert(self.name, k, v, type(self.params[k])) for k, v in {**self.params, **overrides}.items()}
        return replace(self, params=params, lr=lr)

    @property
    def trainable(self) -> bool:
        return any(x is not None for x in (self.peft_config, self.bottleneck, self.trains))

    @property
    def saves_whole_model(self) -> bool:
        """Every weight changes: the entry is a whole Hugging Face model folder."""
        return self.trains is not None and all(self.trains(n) for n in ("transformer.wte.weight", "lm_head.weight"))


def _convert(method: str, name: str, value: Any, kind: type) -> Any:
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise MethodError(f"method {method!r}: {name}={value!r} is not a {kind.__name__}") from None
    if kind in (int, float) and not converted > 0:
        raise MethodError(f"method {method!r}: {name}={value!r} must be positive")
    return converted


def _is_layernorm_or_position(name: str) -> bool:
    return ".ln_" in name or name.startswith("transformer.ln_f") or "wpe" in name


CAUSAL = peft.TaskType.CAUSAL_LM
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("full", "every weight of the base trains", lr=5e-4, trains=lambda name: True),
    Method("lora", "low-rank updates of the attention projections (LoRA)", {"r": 8, "alpha": 16}, lr=2e-3,
           peft_config=lambda r, alpha: peft.LoraConfig(task_type=CAUSAL, r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                        target_modules=["c_attn"], fan_in_fan_out=True),
           mergeable=True),
    Method("adapter", "bottleneck adapter after each block's feed-forward (Pfeiffer)", {"reduction_factor": 16},
           lr=2e-3, bottleneck=lambda reduction_factor: BottleneckConfig("pfeiffer", reduction_factor)),
    Method("houlsby", "two bottleneck adapters per block (Houlsby)", {"reduction_factor": 16}, lr=2e-3,
           bottleneck=lambda reduction_factor: BottleneckConfig("houlsby", reduction_factor)),
    Method("parallel", "bottleneck adapter beside each feed-forward (parallel adapter)",
           {"reduction_factor": 4, "scaling": 4.0}, lr=2e-3,
           bottleneck=lambda reduction_factor, scaling: BottleneckConfig("parallel", reduction_factor, scaling)),
    Method("prefix", "trained key/value prefixes in every attention layer (through an MLP)",
           {"prefix_length": 10, "bottleneck_size": 512}, lr=2e-3,
           peft_config=lambda prefix_length, bottleneck_size: peft.PrefixTuningConfig(
               task_type=CAUSAL, num_virtual_tokens=prefix_length, prefix_projection=True,
               encoder_hidden_size=bottleneck_size)),
    Method("prompt", "trained virtual tokens prepended to every prompt (prompt tuning)", {"prompt_length": 10},
           lr=5e-3, peft_config=lambda prompt_length: peft.PromptTuningConfig(
               task_type=CAUSAL, num_virtual_tokens=prompt_length)),
    Method("ia3", "learned rescaling of the fused query/key/value projection and feed-forward activations (IA3)",
           lr=5e-3,
           peft_config=lambda: peft.IA3Config(task_type=CAUSAL, target_modules=["c_attn", "mlp.c_proj"],
                                              feedforward_modules=["mlp.c_proj"], fan_in_fan_out=True),
           mergeable=True),
    Method("ln", "only LayerNorms and position embeddings train (GPT4TS recipe)", lr=2e-3,
           peft_config=lambda: peft.LNTuningConfig(task_type=CAUSAL, target_modules=["ln_1", "ln_2", "ln_f"],
                                                   modules_to_save=["wpe"])),
    Method("bitfit", "only biases train (BitFit)", lr=2e-3, trains=lambda name: name.endswith(".bias")),
    Method("scratch", "same architecture, random weights, every weight trains (does pretraining help?)",
           lr=5e-4, trains=lambda name: True, reinitialise=True),
    Method("zero-shot", "the base as it is, no training"),
]}


def make_method(name: str, **params: Any) -> Method:
    """The method called ``name`` with its hyper-parameters overridden by ``params``."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name].with_params(**params)


def get_model(base: torch.nn.Module, method: Method, seed: int = 0) -> torch.nn.Module:
    """A copy of ``base`` prepared for ``method``: only the method's weights require grad.

    Every new weight (adapters, LoRA matrices, prefixes, a re-initialised model) is drawn from ``seed``,
    so the same seed gives the same model in any process.
    """
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    if method.reinitialise:
        model = type(model)(model.config)
    if method.peft_config is not None:
        with warnings.catch_warnings():  # peft's own chatter: LayerNorm flagged "unsupported" for LN tuning, which
            warnings.filterwarnings("ignore", message="Unsupported layer type")  # it supports, and a rename
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated")
            return peft.get_peft_model(model, method.peft_config(**method.params))
    if method.bottleneck is not None:
        add_bottlenecks(model, method.bottleneck(**method.params))
        return model
    for name, param in model.named_parameters():
        param.requires_grad_(bool(method.trains and method.trains(name)))
    return model


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a method changed, by parameter name."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved trainable weights back; every saved tensor must find its place."""
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise MethodError(f"saved weights do not fit the method: missing {missing[:3]}, unexpected {extra[:3]}")
    model.load_state_dict(state, strict=False)


def merge_for_serving(model: torch.nn.Module, method: Method) -> torch.nn.Module:
    """The model with LoRA/IA3 folded into the base weights, so serving costs no extra; others unchanged."""
    return model.merge_and_unload() if method.mergeable else model
