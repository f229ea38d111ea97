import numpy as np
import peft
import pytest
import torch

from llmsignal.data import load_bars
from llmsignal.finetune.bars import split_bars
from llmsignal.finetune.base import load_base
from llmsignal.finetune.bottleneck import BottleneckConfig, add_bottlenecks
from llmsignal.finetune.codec import PriceCodec
from llmsignal.finetune.methods import (
    METHODS,
    MethodError,
    count_trainable,
    get_model,
    make_method,
    trainable_state,
)
from llmsignal.finetune.train import TrainConfig
from llmsignal.models import entries
from llmsignal.models.predictor import Predictor
from tests.conftest import TINY_CONTEXT, synthetic_bars


@pytest.fixture(scope="module")
def base(tiny_base):
    return load_base(tiny_base)


def test_full_trains_everything_and_zero_shot_nothing(base):
    total = sum(p.numel() for p in base.model.parameters())
    assert count_trainable(get_model(base.model, make_method("full"))) == total
    assert count_trainable(get_model(base.model, make_method("zero-shot"))) == 0


@pytest.mark.parametrize("name", ["lora", "adapter", "houlsby", "parallel", "prefix", "ia3", "ln", "bitfit"])
def test_parameter_efficient_methods_freeze_the_base(base, name):
    model = get_model(base.model, make_method(name))
    base_names = {n for n, _ in base.model.named_parameters()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, f"{name} trains nothing"
    if name == "bitfit":
        assert set(trainable) < base_names
    else:  # the method's weights are new (ln tunes copies); every weight the base had stays frozen
        assert not {_base_name(n) for n in trainable} & base_names
    if name != "prefix":  # prefix tuning trains a reparameterisation MLP larger than this tiny base
        assert count_trainable(model) < 0.5 * sum(p.numel() for p in base.model.parameters())


def _base_name(name: str) -> str:
    """A parameter's name in the base model, for one wrapped by peft."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", "")


def test_ln_tunes_every_layernorm_and_the_position_embeddings(base):
    model = get_model(base.model, make_method("ln"))
    expected = sum(p.numel() for n, p in base.model.named_parameters() if ".ln_" in n or "ln_f" in n or "wpe" in n)
    assert count_trainable(model) == expected


def test_adapter_sits_in_every_block(base):
    model = get_model(base.model, make_method("adapter"))
    blocks_with_adapter = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad}
    assert blocks_with_adapter == {str(i) for i in range(base.model.config.n_layer)}


@pytest.mark.parametrize("name", ["lora", "adapter", "prefix"])
def test_get_model_leaves_the_base_untouched(base, name):
    before = {n: p.clone() for n, p in base.model.state_dict().items()}
    get_model(base.model, make_method(name))
    assert all(p.requires_grad for p in base.model.parameters())
    after = base.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert not base.model._forward_hooks and not any(b.mlp._forward_hooks for b in base.model.transformer.h)


def test_hyper_parameters_change_the_method(base):
    small = count_trainable(get_model(base.model, make_method("lora", r=2)))
    large = count_trainable(get_model(base.model, make_method("lora", r=16)))
    assert large == 8 * small


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(MethodError) as err:
        make_method("dora")
    assert all(name in str(err.value) for name in METHODS)


def test_parameter_that_does_not_fit_names_what_the_method_takes():
    with pytest.raises(MethodError, match="'ia3' takes no parameter 'r'"):
        make_method("ia3", r=4)
    with pytest.raises(MethodError, match="reduction_factor"):
        make_method("adapter", r=4)


@pytest.fixture(scope="module")
def embedded():
    return load_base("embedded")


@pytest.mark.parametrize(("name", "trainable"), [("lora", 24_576), ("adapter", 19_248), ("houlsby", 38_496),
                                                  ("parallel", 74_688)])
def test_sizes_on_the_embedded_base_match_the_adapters_library(embedded, name, trainable):
    """The counts the adapters library gave (llmsignal 0.1): the same bottleneck and rank sizes."""
    assert count_trainable(get_model(embedded.model, make_method(name))) == trainable


@pytest.mark.parametrize("name", ["adapter", "houlsby", "parallel"])
def test_a_new_bottleneck_adapter_is_the_identity_and_then_learns(base, name):
    model = get_model(base.model, make_method(name))
    ids = torch.randint(3, 17, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base.model(input_ids=ids).logits, rtol=0, atol=0)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    ups = [p.grad for n, p in model.named_parameters() if n.endswith("up.weight")]
    assert ups and all(g is not None and g.abs().sum() > 0 for g in ups)


@pytest.mark.parametrize("knobs", [{"init": "lora"}, {"activation": "gelu"}, {"layer_norm": True},
                                   {"placement": "attention"}, {"last_blocks": 1}])
def test_every_ablation_knob_starts_from_the_base_and_sits_where_it_says(base, knobs):
    """benchmarks/adapter_ablation.py varies these: each still starts as the identity and gets gradients."""
    model = get_model(base.model, make_method("zero-shot"))
    add_bottlenecks(model, BottleneckConfig(**knobs))
    ids = torch.randint(3, 17, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base.model(input_ids=ids).logits, rtol=0, atol=0)
    model(input_ids=ids, labels=ids).loss.backward()
    learned = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    sites = {n.split(".bottleneck_")[0] + "." + n.split(".bottleneck_")[1].split(".")[0] for n in learned}
    blocks = len(model.transformer.h)
    where = range(blocks - knobs.get("last_blocks", blocks), blocks)
    kind = "attn" if knobs.get("placement") == "attention" else "ffn"
    assert sites == {f"transformer.h.{i}.{kind}" for i in where}
    down = [p for n, p in model.named_parameters() if n.endswith("down.weight")]
    assert (max(float(p.std()) for p in down) > 0.03) == (knobs.get("init") == "lora")  # LoRA's A, not std 0.01


def test_prompt_tuning_is_offered(base):
    model = get_model(base.model, make_method("prompt", prompt_length=5))
    assert count_trainable(model) == 5 * base.model.config.n_embd


@pytest.mark.parametrize("value", ["-4", "0", "four"])
def test_a_bad_hyper_parameter_is_one_clear_error(value):
    with pytest.raises(MethodError, match=r"method 'lora': r="):
        make_method("lora", r=value)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("bars") / "bars.csv"
    synthetic_bars(300).to_csv(path)
    return split_bars(load_bars(path), context=TINY_CONTEXT)


def _saved_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What an entry keeps of a model: peft's saved state for a peft model, else its trained weights."""
    if isinstance(model, peft.PeftModel):
        return peft.get_peft_model_state_dict(model)
    return trainable_state(model)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_saves_loads_and_predicts_what_it_trained(name, base, split, tmp_path, monkeypatch):
    trained = []  # the search's result: the model as training left it, in memory
    search = entries.search
    monkeypatch.setattr(entries, "search", lambda *args, **kw: trained.append(search(*args, **kw)) or trained[-1])
    method = make_method(name)
    entry, _ = entries.train_entry(split, base, method, entries.entry_registry(tmp_path / "reg"), f"t-{name}",
                                   TrainConfig(steps=2, batch_size=4, window=TINY_CONTEXT + 1), "bars.csv",
                                   TINY_CONTEXT)
    model = trained[0].model
    loaded = Predictor.from_entry(entries.entry_registry(tmp_path / "reg").get(entry.ref))
    assert entry.metadata["cost"]["trainable_params"] == count_trainable(model)
    assert (count_trainable(model) > 0) == method.trainable
    kept, saved = _saved_weights(loaded.model), _saved_weights(model)
    if method.saves_whole_model:
        kept = {n: p for n, p in loaded.model.state_dict().items() if n in saved}
    assert kept.keys() == saved.keys() and all(torch.equal(kept[n], saved[n].cpu()) for n in saved)
    bars = split.bars.iloc[:split.test_start + 6]
    in_memory = Predictor(model, base.tokenizer, PriceCodec(**entry.metadata["codec"]))
    forecasts = loaded.predict(bars, split.test_start, progress=False)
    assert len(forecasts) == 6 and np.isfinite(forecasts["forecast"]).all()
    np.testing.assert_array_equal(forecasts["forecast"], in_memory.predict(bars, split.test_start,
                                                                            progress=False)["forecast"])
