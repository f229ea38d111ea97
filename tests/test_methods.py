import pytest

from llmsignal.finetune.base import load_base
from llmsignal.finetune.methods import METHODS, MethodError, count_trainable, get_model, make_method


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
    if name in ("ln", "bitfit"):
        assert set(trainable) < base_names
    else:  # adapter weights are new; every weight the base had stays frozen
        assert not set(trainable) & base_names
    if name != "prefix":  # prefix tuning trains a reparameterisation MLP larger than this tiny base
        assert count_trainable(model) < 0.5 * sum(p.numel() for p in base.model.parameters())


def test_adapter_sits_in_every_block(base):
    model = get_model(base.model, make_method("adapter"))
    blocks_with_adapter = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad}
    assert blocks_with_adapter == {str(i) for i in range(base.model.config.n_layer)}


def test_get_model_leaves_the_base_untouched(base):
    get_model(base.model, make_method("lora"))
    assert all(p.requires_grad for p in base.model.parameters())
    assert not hasattr(base.model, "adapters_config")


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
