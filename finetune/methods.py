"""Tuning methods: one config each, one entry point.

    >>> from llmsignal.finetune.base import load_base
    >>> method = make_method("lora", r=4)
    >>> model = get_model(load_base().model, method)   # the base, made trainable the way the method says

Bottleneck adapters (Pfeiffer and Houlsby), parallel adapters, LoRA, prefix tuning
and IA3 come from the ``adapters`` library (AdapterHub); full fine-tuning,
``ln``, ``bitfit``, ``scratch`` and ``zero-shot`` only choose which of the base's
own weights train. A new method is a new entry in ``METHODS``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import adapters
import torch

ADAPTER_NAME = "llmsignal"


class MethodError(ValueError):
    """An unknown method or a hyper-parameter the method does not take."""


@dataclass(frozen=True)
class Method:
    """A tuning method: which weights train, and its hyper-parameters.

    ``adapter_config`` builds an ``adapters`` config from the hyper-parameters;
    ``trains`` selects base parameters by name when there is no adapter.
    """

    name: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    adapter_config: Callable[..., Any] | None = None
    trains: Callable[[str], bool] | None = None
    reinitialise: bool = False

    def with_params(self, **overrides: Any) -> Method:
        unknown = sorted(set(overrides) - set(self.params) - {"lr"})
        if unknown:
            takes = ", ".join(sorted(self.params)) or "no hyper-parameters"
            raise MethodError(f"method {self.name!r} takes no parameter {unknown[0]!r}; it takes: {takes} (and lr)")
        lr = _convert(self.name, "lr", overrides.pop("lr", self.lr), float)
        params = {k: _convert(self.name, k, v, type(self.params[k])) for k, v in {**self.params, **overrides}.items()}
        return Method(self.name, self.description, params, lr, self.adapter_config, self.trains, self.reinitialise)

    @property
    def trainable(self) -> bool:
        return self.adapter_config is not None or self.trains is not None


def _convert(method: str, name: str, value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise MethodError(f"method {method!r}: {name}={value!r} is not a {kind.__name__}") from None


def _is_layernorm_or_position(name: str) -> bool:
    return ".ln_" in name or name.startswith("transformer.ln_f") or "wpe" in name


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("full", "every weight of the base trains", lr=5e-4, trains=lambda name: True),
    Method("lora", "low-rank updates of the attention projections (LoRA)", {"r": 8, "alpha": 16},
           lr=2e-3, adapter_config=lambda r, alpha: adapters.LoRAConfig(r=r, alpha=alpha)),
    Method("adapter", "bottleneck adapter after each block's feed-forward (Pfeiffer)", {"reduction_factor": 16},
           lr=2e-3, adapter_config=lambda reduction_factor: adapters.SeqBnConfig(reduction_factor=reduction_factor)),
    Method("houlsby", "two bottleneck adapters per block (Houlsby)", {"reduction_factor": 16}, lr=2e-3,
           adapter_config=lambda reduction_factor: adapters.DoubleSeqBnConfig(reduction_factor=reduction_factor)),
    Method("parallel", "bottleneck adapter beside each feed-forward (parallel adapter)", {"reduction_factor": 4},
           lr=2e-3, adapter_config=lambda reduction_factor: adapters.ParBnConfig(reduction_factor=reduction_factor)),
    Method("prefix", "trained key/value prefixes in every attention layer (through an MLP)",
           {"prefix_length": 10, "bottleneck_size": 512}, lr=2e-3,
           adapter_config=lambda prefix_length, bottleneck_size: adapters.PrefixTuningConfig(
               prefix_length=prefix_length, bottleneck_size=bottleneck_size)),
    Method("ia3", "learned rescaling of keys, values and feed-forward activations (IA3)", lr=5e-3,
           adapter_config=lambda: adapters.IA3Config()),
    Method("ln", "only LayerNorms and position embeddings train (GPT4TS recipe)", lr=2e-3,
           trains=_is_layernorm_or_position),
    Method("bitfit", "only biases train (BitFit)", lr=2e-3, trains=lambda name: name.endswith(".bias")),
    Method("scratch", "same architecture, random weights, every weight trains (does pretraining help?)",
           lr=5e-4, trains=lambda name: True, reinitialise=True),
    Method("zero-shot", "the base as it is, no training"),
]}
UNSUPPORTED = {"prompt": "prompt tuning: the adapters library does not support it for GPT-2"}


def make_method(name: str, **params: Any) -> Method:
    """The method called ``name`` with its hyper-parameters overridden by ``params``."""
    if name not in METHODS:
        why = f" ({UNSUPPORTED[name]})" if name in UNSUPPORTED else ""
        raise MethodError(f"unknown method {name!r}{why}; known methods: {', '.join(METHODS)}")
    return METHODS[name].with_params(**params)


def get_model(base: torch.nn.Module, method: Method, seed: int = 0) -> torch.nn.Module:
    """A copy of ``base`` prepared for ``method``: only the method's weights require grad."""
    model = copy.deepcopy(base)
    if method.reinitialise:
        torch.manual_seed(seed)
        model = type(model)(model.config)
    if method.adapter_config is not None:
        adapters.init(model)
        model.add_adapter(ADAPTER_NAME, config=method.adapter_config(**method.params), set_active=True)
        model.train_adapter(ADAPTER_NAME)
    else:
        for name, param in model.named_parameters():
            param.requires_grad_(bool(method.trains and method.trains(name)))
    return model


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a method changed: what an entry stores."""
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


def merge_for_serving(model: torch.nn.Module, method: Method) -> bool:
    """Fold LoRA/IA3 weights into the base so serving costs no extra; True when merged."""
    if method.name not in ("lora", "ia3"):
        return False
    model.merge_adapter(ADAPTER_NAME)
    return True
