"""Entries load in plain tools, old entries are refused with a way out, and model folders never run code."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import peft
import pytest
from transformers import AutoModelForCausalLM

from llmsignal.cli import main
from llmsignal.finetune.base import BaseModelError, load_base
from llmsignal.finetune.codec import PriceCodec
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Registry, RegistryError
from tests.conftest import tiny_entries


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    return tiny_entries(tmp_path_factory.mktemp("entries"), tiny_base, ("lora", "prompt", "full", "adapter"), bars=400)


def _forecasts_of(model, tokenizer, entry, split) -> np.ndarray:
    predictor = Predictor(model, tokenizer, PriceCodec(**entry.metadata["codec"]))
    return predictor.predict(split.bars, split.test_start, progress=False)["forecast"].to_numpy()


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_a_peft_entry_loads_with_peft_alone_and_forecasts_the_same(trained, tiny_base, method):
    entries, split, _ = trained
    entry = entries[method]
    assert set(entry.metadata["files"]) == {"adapter_config.json", "adapter_model.safetensors"}
    base = load_base(tiny_base)
    plain = peft.PeftModel.from_pretrained(base.model, entry.path)
    ours = Predictor.from_entry(entry).predict(split.bars, split.test_start, progress=False)["forecast"].to_numpy()
    np.testing.assert_allclose(_forecasts_of(plain, base.tokenizer, entry, split), ours, rtol=1e-12)


def test_a_full_entry_is_a_hugging_face_model_folder(trained, tiny_base):
    entries, split, _ = trained
    entry = entries["full"]
    plain = AutoModelForCausalLM.from_pretrained(entry.path)
    ours = Predictor.from_entry(entry).predict(split.bars, split.test_start, progress=False)["forecast"].to_numpy()
    np.testing.assert_allclose(_forecasts_of(plain, load_base(tiny_base).tokenizer, entry, split), ours, rtol=1e-12)
    base_forecasts = _forecasts_of(load_base(tiny_base).model, load_base(tiny_base).tokenizer, entry, split)
    assert np.abs(base_forecasts - ours).max() > 1e-9  # it holds the tuned weights, not the base's


def test_an_entry_from_llmsignal_0_1_is_refused_with_how_to_retrain(trained, tmp_path):
    entries, _, _ = trained
    old = Registry(tmp_path / "reg").save("old-adapter", {"weights.safetensors": entries["adapter"].file(
        "weights.safetensors")}, {k: v for k, v in entries["adapter"].metadata.items()
                                   if k not in ("format", "name", "version", "files", "created")})
    with pytest.raises(RegistryError, match=r"saved by llmsignal 0.1.*llmsignal train --method adapter --force"):
        Predictor.from_entry(old)


@pytest.fixture()
def remote_code_base(tiny_base, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(tiny_base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    return folder, marker


def test_a_base_whose_config_asks_for_remote_code_is_refused_and_runs_nothing(remote_code_base, capsys):
    folder, marker = remote_code_base
    with pytest.raises(BaseModelError, match=r"config.json: asks for custom code \(auto_map\)"):
        load_base(str(folder))
    assert main(["methods", "--base", str(folder)]) == 2
    assert "asks for custom code" in capsys.readouterr().err
    assert not marker.exists()


def test_a_base_that_is_not_a_supported_causal_lm_is_refused(tiny_base, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_base, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(BaseModelError, match=r"config.json: model_type 'bert' is not supported"):
        load_base(str(folder))


WEIGHT_HASHES = """
import hashlib, sys
import torch
from llmsignal.finetune.base import load_base
from llmsignal.finetune.methods import METHODS, get_model, make_method, trainable_state
base = load_base(sys.argv[1])
for name, method in METHODS.items():
    state = trainable_state(get_model(base.model, make_method(name), seed=3))
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    print(name, digest)
"""


def test_the_same_seed_gives_bit_identical_weights_in_two_processes(tiny_base):
    runs = [subprocess.run([sys.executable, "-c", WEIGHT_HASHES, tiny_base], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}, timeout=300) for seed in (1, 2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    first, second = (dict(line.split() for line in run.stdout.splitlines()) for run in runs)
    assert first == second and {"lora", "adapter", "prefix", "prompt", "ia3", "scratch"} <= set(first)
