"""Precision that knows the CPU, and the training step's dropout and attention choices."""

import numpy as np
import pytest
import torch

from llmsignal.cli import main
from llmsignal.finetune import precision
from llmsignal.finetune.base import load_base
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.methods import get_model, make_method
from llmsignal.finetune.precision import PrecisionError, resolve_precision
from llmsignal.finetune.train import TrainConfig, float32_attention, train
from llmsignal.models.predictor import PredictionError, Predictor

CPU = torch.device("cpu")


@pytest.fixture
def cpu_without_bfloat16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_features", lambda: ["AVX2"])


@pytest.fixture
def cpu_with_amx(monkeypatch):
    monkeypatch.setattr(precision, "cpu_features", lambda: ["AVX2", "AVX-512", "AVX-512 BF16", "AMX"])


def test_bfloat16_falls_back_to_float32_on_a_cpu_without_it_and_says_why(cpu_without_bfloat16):
    chosen = resolve_precision("bfloat16", CPU)
    assert chosen.name == "float32"
    assert "no native bfloat16" in chosen.note and "AMX or AVX-512 BF16" in chosen.note
    assert resolve_precision("auto", CPU).name == "float32"


@pytest.mark.parametrize("float32_ms, bfloat16_ms, chosen", [(30.0, 12.0, "bfloat16"), (30.0, 42.0, "float32")])
def test_auto_takes_the_format_measured_faster_on_this_cpu_and_remembers(cpu_with_amx, monkeypatch, tmp_path,
                                                                         float32_ms, bfloat16_ms, chosen):
    monkeypatch.setenv("LLMSIGNAL_CACHE", str(tmp_path))
    precision.measured_speeds.cache_clear()
    probed = []

    def clock(name):
        probed.append(name)
        return {"float32": float32_ms, "bfloat16": bfloat16_ms}[name]

    monkeypatch.setattr(precision, "_step_and_forecast_ms", clock)
    picked = resolve_precision("auto", CPU)
    assert picked.name == chosen and picked.timings == {"float32": float32_ms, "bfloat16": bfloat16_ms}
    assert f"{float32_ms:.1f} ms in float32 and {bfloat16_ms:.1f} ms in bfloat16" in picked.note
    precision.measured_speeds.cache_clear()  # a new process: the file answers, nothing is timed again
    assert resolve_precision("auto", CPU).name == chosen and len(probed) == 2
    assert resolve_precision("bfloat16", CPU).name == "bfloat16"
    assert resolve_precision("float32", CPU).name == "float32"
    precision.measured_speeds.cache_clear()


def test_the_probe_times_both_formats_for_real():
    assert precision._step_and_forecast_ms("float32", repeats=1) > 0


def test_auto_keeps_float32_on_a_gpu_where_bfloat16_was_measured_slower(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    gpu = torch.device("cuda")
    chosen = resolve_precision("auto", gpu)
    assert chosen.name == "float32" and "too small for bfloat16 to pay" in chosen.note
    assert resolve_precision("bfloat16", gpu).name == "bfloat16"  # asked for, it runs


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(PrecisionError, match="unknown precision 'half'; choose one of auto, float32, bfloat16"):
        resolve_precision("half")


def test_predict_says_in_one_line_that_it_fell_back(cpu_without_bfloat16, tmp_path, capsys, tiny_base):
    from tests.conftest import tiny_entries

    entries, split, csv = tiny_entries(tmp_path, tiny_base)
    code = main(["predict", "--entry", entries["lora"].ref, "--registry", str(tmp_path / "reg"), "--data", str(csv),
                 "--out", str(tmp_path / "p.csv"), "--precision", "bfloat16"])
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "float32 instead" in warnings[0]
    assert Predictor.from_entry(entries["lora"], precision="bfloat16").precision == "float32"
    with pytest.raises(PredictionError, match="unknown precision"):
        Predictor.from_entry(entries["lora"], precision="fp8")


def _bins() -> np.ndarray:
    return np.random.default_rng(0).integers(30, 70, 400)


@pytest.mark.parametrize("method", ["full", "lora", "adapter", "prefix"])
def test_bfloat16_training_runs_attention_in_float32_and_gives_the_model_back_unchanged(method, tiny_base):
    base = load_base(tiny_base)
    model = get_model(base.model, make_method(method))
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen = []
    inner.transformer.h[0].attn.register_forward_pre_hook(
        lambda module, args: seen.append((inner.config._attn_implementation, torch.is_autocast_enabled("cpu"))))
    result = train(model, TokenTable(base.tokenizer), [_bins()], [_bins()],
                   TrainConfig(steps=2, batch_size=2, window=17, precision="bfloat16"), lr=1e-3)
    assert seen[0] == ("sdpa_float32", True)
    assert inner.config._attn_implementation == "sdpa"  # entries are saved with the attention they load with
    assert np.isfinite(result.val_loss)


def test_float32_attention_leaves_a_float32_model_alone(tiny_base):
    model = get_model(load_base(tiny_base).model, make_method("full"))
    with float32_attention(model, "float32"):
        assert model.config._attn_implementation == "sdpa"


def test_fine_tuning_turns_dropout_off_and_pretraining_keeps_it(tiny_base):
    base = load_base(tiny_base)
    table = TokenTable(base.tokenizer)
    rates = {}
    for dropout in (0.0, None):
        model = get_model(base.model, make_method("full"))
        train(model, table, [_bins()], [_bins()], TrainConfig(steps=1, batch_size=2, window=17, dropout=dropout),
              lr=1e-3)
        rates[dropout] = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates[0.0] == {0.0}
    assert rates[None] == {base.model.config.resid_pdrop}


def test_bfloat16_training_stays_close_to_float32(tiny_base):
    """Same windows, same seed: the two number formats learn nearly the same model."""
    base = load_base(tiny_base)
    table, losses = TokenTable(base.tokenizer), {}
    for name in ("float32", "bfloat16"):
        model = get_model(base.model, make_method("lora"))
        result = train(model, table, [_bins()], [_bins()],
                       TrainConfig(steps=5, batch_size=4, window=17, precision=name), lr=1e-3)
        losses[name] = np.array(result.loss_history)
    assert np.abs(losses["bfloat16"] - losses["float32"]).max() < 0.05
