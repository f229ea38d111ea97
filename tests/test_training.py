import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from llmsignal.data import load_bars
from llmsignal.finetune.bars import split_bars
from llmsignal.finetune.base import BaseModelError, load_base
from llmsignal.finetune.codec import PriceCodec
from llmsignal.finetune.methods import make_method
from llmsignal.finetune.train import TrainConfig
from llmsignal.models.entries import train_entry
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Registry
from tests.conftest import synthetic_bars

CONTEXT = 16


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "bars.csv"
    synthetic_bars(400).to_csv(path)
    return split_bars(load_bars(path), context=CONTEXT)


def test_interrupted_training_resumes_to_the_same_weights(split, tiny_base, tmp_path, monkeypatch):
    base, method = load_base(tiny_base), make_method("full")
    config = TrainConfig(steps=6, batch_size=4, window=CONTEXT + 1, checkpoint_every=2)
    reference, _ = train_entry(split, base, method, Registry(tmp_path / "a"), "m", config, "x", CONTEXT)

    registry = Registry(tmp_path / "b")
    real_step, calls = torch.optim.AdamW.step, []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_entry(split, base, method, registry, "m", config, "x", CONTEXT)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert registry.versions("m") == []
    assert list((registry.root / ".checkpoints").iterdir())
    resumed, trained = train_entry(split, base, method, registry, "m", config, "x", CONTEXT, resume=True)
    assert trained
    expected, got = load_file(reference.file("model.safetensors")), load_file(resumed.file("model.safetensors"))
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor)
    assert not list((registry.root / ".checkpoints").iterdir())


@pytest.fixture(scope="module")
def tiny_gpt2_bpe(tmp_path_factory):
    """A tiny GPT-2 with a byte-level BPE tokenizer, saved like `gpt2` is: the real path, offline."""
    corpus = [PriceCodec.encode(range(i, i + 30)) for i in range(0, 70)] + ["the price of a pip, in words"] * 5
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2TokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    path = tmp_path_factory.mktemp("gpt2_bpe")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2,
                               n_head=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("method", ["lora", "adapter", "ia3"])
def test_gpt2_with_bpe_tokenizer_goes_through_the_same_path(split, tiny_gpt2_bpe, tmp_path, method):
    base = load_base(tiny_gpt2_bpe)
    assert type(base.tokenizer).__name__ in ("GPT2Tokenizer", "GPT2TokenizerFast")  # transformers 5: one class
    entry, _ = train_entry(split, base, make_method(method), Registry(tmp_path), f"bpe-{method}",
                           TrainConfig(steps=2, batch_size=2, window=CONTEXT + 1), "x", CONTEXT)
    frame = Predictor.from_entry(entry).predict(split.bars, split.test_start, progress=False)
    assert frame["forecast"].notna().all() and frame["p_up"].between(0, 1).all()


def test_merged_lora_serves_the_same_forecasts(split, tiny_base, tmp_path):
    entry, _ = train_entry(split, load_base(tiny_base), make_method("lora"), Registry(tmp_path),
                           "m", TrainConfig(steps=3, batch_size=4, window=CONTEXT + 1), "x", CONTEXT)
    plain = Predictor.from_entry(entry).predict(split.bars, split.test_start, progress=False)
    merged = Predictor.from_entry(entry, merge=True).predict(split.bars, split.test_start, progress=False)
    assert (plain["forecast"] - merged["forecast"]).abs().max() < 1e-9


def test_a_base_that_is_not_a_causal_lm_is_refused(tmp_path, tiny_base):
    from transformers import T5Config

    from llmsignal.finetune.base import embedded_tokenizer

    T5Config(vocab_size=20, d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8).save_pretrained(tmp_path)
    embedded_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(BaseModelError, match=r"config.json: model_type .t5. is not supported"):
        load_base(str(tmp_path))


def test_a_base_without_tokenizer_is_refused(tmp_path, tiny_base):
    GPT2LMHeadModel.from_pretrained(tiny_base).save_pretrained(tmp_path)
    with pytest.raises(BaseModelError, match="no usable tokenizer"):
        load_base(str(tmp_path))
