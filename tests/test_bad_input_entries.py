"""Issue #29: what a registry entry, an export or a base folder can claim, and the one line each gets.

Every file a loader reads is checked against the entry's metadata and the base before anything is allocated:
adapter_config.json (which peft builds the model from), safetensors headers (bounded by the bytes really in
the file), whole-model and base configs (bounded by GPT-2's sizes); version folders are ASCII digits only.
"""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from llmsignal.cli import main
from llmsignal.finetune.base import BaseModelError, check_config_sizes
from llmsignal.models.entries import entry_registry
from llmsignal.models.registry import Registry, RegistryError, file_sha256
from tests.conftest import tiny_entries
from tests.test_bad_input import _one_line


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    entries, _, csv = tiny_entries(tmp_path_factory.mktemp("entries"), tiny_base, ("lora", "prompt", "adapter", "full"),
                                   bars=400, prefix="ok")
    return entries, csv


def _export(entry, folder: Path) -> Path:
    Registry(entry.path.parent.parent).export(entry.ref, folder)
    return folder


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def _rehash(folder: Path) -> None:
    """What an attacker does after editing a file: the export's hashes agree with it again."""
    _edit_json(folder / "metadata.json",
               lambda meta: meta.update(files={name: file_sha256(folder / name) for name in meta["files"]}))


def _edit_header(path: Path, change) -> None:
    """Rewrite a safetensors file's header (its tensor bytes kept) with ``change(header)``."""
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])


def _first_tensor(header: dict) -> dict:
    return header[next(name for name in sorted(header) if name != "__metadata__")]


def _claim_2_62_bytes(header: dict) -> None:
    _first_tensor(header).update(dtype="F32", shape=[2**31, 2**29], data_offsets=[0, 2**62])


def _header_length_2_62(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**62) + path.read_bytes()[8:])


def _import_is_refused(capsys, export: Path, registry: Path, message: str) -> None:
    code, err = _cli(capsys, "registry", "import", export, "--registry", registry)
    line = _one_line(err)
    assert code == 2 and message in line, line
    assert Registry(registry).names() == []


def _copied_by_hand_is_invalid(capsys, export: Path, registry: Path, data: Path, message: str) -> None:
    """The same folder copied into the registry by hand: listed invalid, and predict says why in one line."""
    hand = registry / "hand" / "1"
    shutil.copytree(export, hand)
    _edit_json(hand / "metadata.json", lambda meta: meta.update(name="hand", version=1))
    [row] = entry_registry(registry).list_rows()
    assert row["status"].startswith("invalid:") and message in row["status"], row["status"]
    code, err = _cli(capsys, "predict", "--entry", "hand", "--registry", registry, "--out", registry / "f.csv",
                     "--data", data)
    assert code == 2 and message in _one_line(err) and not (registry / "f.csv").exists()


# --- 1. adapter_config.json and the tensors beside it -----------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(r=3_000_000), "adapter_config.json: r is 3000000 where the metadata's lora (r=8, alpha=16) "
                                      "gives 8"),
    (lambda c: c.update(rank_pattern={"c_attn": 3_000_000}), "adapter_config.json: rank_pattern is {'c_attn': "),
    (lambda c: c.update(target_modules=["c_attn", "c_fc", "c_proj"]), "adapter_config.json: target_modules is"),
    (lambda c: c.update(peft_type="IA3"), "adapter_config.json: peft_type is 'IA3' where"),
    (lambda c: c.pop("r"), "adapter_config.json: r is 8 where"),  # absent: peft's default 8 is the metadata's
    (lambda c: c.clear() or c.update(x=[]), "adapter_config.json: peft_type is None"),
])
def test_an_adapter_config_the_metadata_does_not_describe_is_refused(trained, tmp_path, capsys, change, message):
    entries, csv = trained
    export = _export(entries["lora"], tmp_path / "export")
    _edit_json(export / "adapter_config.json", change)
    _rehash(export)
    if "r is 8" in message:  # a missing r is peft's default, which is what the metadata says: it imports
        assert entry_registry(tmp_path / "reg").import_(export).version == 1
        return
    _import_is_refused(capsys, export, tmp_path / "reg", message)
    _copied_by_hand_is_invalid(capsys, export, tmp_path / "reg", csv, message)


def test_a_rank_in_both_files_must_be_the_rank_of_the_saved_tensors(trained, tmp_path, capsys):
    entries, csv = trained
    export = _export(entries["lora"], tmp_path / "export")
    _edit_json(export / "adapter_config.json", lambda c: c.update(r=3_000_000))
    _edit_json(export / "metadata.json", lambda m: m["method_params"].update(r=3_000_000))
    _rehash(export)
    message = "is not a rank-3000000 LoRA matrix"
    _import_is_refused(capsys, export, tmp_path / "reg", message)
    _copied_by_hand_is_invalid(capsys, export, tmp_path / "reg", csv, message)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(token_dim=10**9), "token_dim 1000000000 is not the base's n_embd 32"),
    (lambda c: c.update(num_layers=5000), "num_layers 5000 is not the base's n_layer 2"),
    (lambda c: c.update(num_virtual_tokens=10**7), "num_virtual_tokens is 10000000 where"),
    (lambda c: c.update(num_transformer_submodules=10**6), "num_transformer_submodules 1000000 is not 1"),
])
def test_a_prompt_config_sized_unlike_its_base_is_refused(trained, tmp_path, capsys, change, message):
    entries, csv = trained
    export = _export(entries["prompt"], tmp_path / "export")
    _edit_json(export / "adapter_config.json", change)
    _rehash(export)
    _import_is_refused(capsys, export, tmp_path / "reg", message)
    _copied_by_hand_is_invalid(capsys, export, tmp_path / "reg", csv, message)


def test_virtual_tokens_in_both_files_must_be_those_saved(trained, tmp_path, capsys):
    entries, _ = trained
    export = _export(entries["prompt"], tmp_path / "export")
    _edit_json(export / "adapter_config.json", lambda c: c.update(num_virtual_tokens=10**7))
    _edit_json(export / "metadata.json", lambda m: m["method_params"].update(prompt_length=10**7))
    _rehash(export)
    _import_is_refused(capsys, export, tmp_path / "reg", "not the prompt_embeddings of shape [10000000, 32]")


@pytest.mark.parametrize(("method", "file"), [("lora", "adapter_model.safetensors"),
                                              ("adapter", "weights.safetensors"), ("full", "model.safetensors")])
@pytest.mark.parametrize("damage", ["claims 2**62 bytes", "header of 2**62 bytes"])
def test_a_safetensors_header_claiming_2_62_bytes_is_one_line(trained, tmp_path, capsys, method, file, damage):
    entries, csv = trained
    export = _export(entries[method], tmp_path / "export")
    if damage == "claims 2**62 bytes":
        _edit_header(export / file, _claim_2_62_bytes)
        message = f"{file}: tensor "
    else:
        _header_length_2_62(export / file)
        message = f"{file}: not a safetensors file (its header claims 4,611,686,018,427,387,904 bytes"
    _rehash(export)
    _import_is_refused(capsys, export, tmp_path / "reg", message)
    _copied_by_hand_is_invalid(capsys, export, tmp_path / "reg", csv, message)


def test_bottleneck_tensors_of_other_shapes_are_one_line_on_predict(trained, tmp_path, capsys):
    entries, csv = trained
    export = _export(entries["adapter"], tmp_path / "export")

    def reshape(header):  # the same bytes, another shape: only the model being loaded can tell
        tensor = header["transformer.h.0.bottleneck_ffn.down.weight"]
        tensor["shape"] = [tensor["shape"][0] * 2, tensor["shape"][1] // 2]

    _edit_header(export / "weights.safetensors", reshape)
    _rehash(export)
    registry = tmp_path / "reg"
    entry = entry_registry(registry).import_(export, name="hand")
    code, err = _cli(capsys, "predict", "--entry", entry.ref, "--registry", registry, "--out", tmp_path / "f.csv",
                     "--data", csv)
    line = _one_line(err)
    assert code == 2 and "weights.safetensors: its tensors do not fit a adapter model" in line
    assert "bottleneck_ffn.down.weight" in line and not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(n_layer=200), "config.json: n_layer 200 is not a whole number from 1 to 64"),
    (lambda c: c.update(n_embd=8192), "config.json: n_embd 8192 is not a whole number from 1 to 2,048"),
    (lambda c: c.update(n_layer=3), "config.json: n_layer 3 is not the base's 2"),
    (lambda c: c.update(auto_map={"AutoModel": "x.Y"}), "asks for custom code"),
])
def test_a_whole_model_config_is_bounded_and_must_be_its_bases(trained, tmp_path, capsys, change, message):
    entries, csv = trained
    export = _export(entries["full"], tmp_path / "export")
    _edit_json(export / "config.json", change)
    _rehash(export)
    _import_is_refused(capsys, export, tmp_path / "reg", message)
    _copied_by_hand_is_invalid(capsys, export, tmp_path / "reg", csv, message)


def test_a_pickle_in_a_whole_model_entry_is_refused(trained, tmp_path, capsys):
    entries, _ = trained
    export = _export(entries["full"], tmp_path / "export")
    (export / "pytorch_model.bin").write_bytes(b"\x80\x04planted")
    _edit_json(export / "metadata.json", lambda m: m["files"].update({"pytorch_model.bin": ""}))
    _rehash(export)
    _import_is_refused(capsys, export, tmp_path / "reg", "a full entry is a Hugging Face model folder")


def test_every_method_still_exports_imports_and_loads(trained, tmp_path):
    from llmsignal.models.entries import load_entry_model

    entries, _ = trained
    registry = entry_registry(tmp_path / "reg")
    for method, entry in entries.items():
        imported = registry.import_(_export(entry, tmp_path / method))
        load_entry_model(imported)
    assert [row["status"] for row in registry.list_rows()] == ["ok"] * len(entries)


# --- 5. version folders -----------------------------------------------------------------------------------------

@pytest.fixture()
def odd_versions(tmp_path):
    """A registry whose entry m has version 1 and folders that are not versions: '²', '١' (Arabic-Indic one) ..."""
    source = tmp_path / "w.bin"
    source.write_bytes(b"w")
    registry = Registry(tmp_path / "reg")
    registry.save("m", {"w.bin": source}, {"method": "zero-shot"})
    for odd in ("²", "١", "01", "1x"):
        shutil.copytree(registry.root / "m" / "1", registry.root / "m" / odd)
        _edit_json(registry.root / "m" / odd / "metadata.json", lambda meta, odd=odd: meta.update(version=odd))
    (registry.root / "m" / "notes.txt").write_text("mine")
    return registry, source


def test_folders_that_are_not_ascii_versions_are_listed_foreign_and_skipped(odd_versions, capsys):
    registry, source = odd_versions
    rows = registry.list_rows()
    assert [(r["version"], r["status"]) for r in rows][0] == (1, "ok")
    foreign = {row["status"].split("'")[1] for row in rows[1:]}
    assert foreign == {"²", "١", "01", "1x", "notes.txt"}
    assert all(row["status"].startswith("foreign: ") and row["version"] is None for row in rows[1:])
    assert registry.versions("m") == [1] and registry.get("m").version == 1
    assert registry.save("m", {"w.bin": source}, {}).version == 2  # no crash taking the next number
    code = main(["registry", "list", "--registry", str(registry.root)])
    out = capsys.readouterr().out
    assert code == 0 and "foreign: '²' is not a version" in out
    assert registry.remove("m") == ["m@1", "m@2"]
    assert (registry.root / "m" / "²").is_dir()  # not ours to delete


@pytest.mark.parametrize("version", ["١", "²", "𝟏", "1x", "-1", "+1", " 1"])
def test_a_version_that_is_not_ascii_digits_is_one_line(odd_versions, capsys, tmp_path, version):
    registry, _ = odd_versions
    ref = f"m@{version}"
    for argv in (["registry", "show", ref], ["registry", "rm", ref], ["registry", "export", ref, tmp_path / "e"],
                 ["predict", "--entry", ref, "--out", tmp_path / "f.csv"]):
        code, err = _cli(capsys, *argv, "--registry", registry.root)
        line = _one_line(err)
        assert code == 2 and "is not a number in the digits 0-9" in line, line
    assert registry.versions("m") == [1] and not (tmp_path / "e").exists() and not (tmp_path / "f.csv").exists()
    with pytest.raises(RegistryError, match="not a number in the digits 0-9"):
        registry.get(ref)


def test_an_import_beside_foreign_folders_takes_the_next_version(odd_versions, tmp_path):
    registry, _ = odd_versions
    registry.export("m@1", tmp_path / "export")
    assert registry.import_(tmp_path / "export").ref == "m@2"


# --- 2. base folders --------------------------------------------------------------------------------------------

@pytest.fixture()
def base(tiny_base, tmp_path) -> Path:
    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    return folder


def _base_info_is_refused(capsys, base: Path, message: str) -> str:
    code, err = _cli(capsys, "base-info", "--base", base)
    line = _one_line(err)
    assert code == 2 and message in line, line
    return line


@pytest.mark.parametrize(("change", "message"), [
    ({"n_layer": 200}, "n_layer 200 is not a whole number from 1 to 64 (GPT-2 xl: 48)"),
    ({"n_embd": 8192, "n_head": 64}, "n_embd 8192 is not a whole number from 1 to 2,048"),
    ({"n_layer": 64, "n_embd": 2048, "n_head": 32}, "parameters, over the 2,000,000,000 llmsignal loads"),
    ({"vocab_size": 10**9}, "vocab_size 1000000000 is not a whole number"),
    ({"n_positions": -1}, "n_positions -1 is not a whole number"),
    ({"n_head": "2"}, "n_head '2' is not a whole number"),
    ({"n_head": 3}, "n_embd 32 is not a multiple of n_head 3"),
])
def test_a_base_config_too_big_for_gpt2_is_refused_before_allocation(base, tmp_path, capsys, bars_csv, change,
                                                                      message):
    _edit_json(base / "config.json", lambda c: c.update(change))
    assert str(base / "config.json") in _base_info_is_refused(capsys, base, message)
    code, err = _cli(capsys, "train", "--method", "lora", "--base", base, "--data", bars_csv, "--quick",
                     "--registry", tmp_path / "reg")
    assert code == 2 and message in _one_line(err) and not (tmp_path / "reg").exists()


@pytest.mark.parametrize("size", ["small", "medium", "large", "xl"])
def test_every_gpt2_size_is_admitted(size):
    layers, width, heads = {"small": (12, 768, 12), "medium": (24, 1024, 16), "large": (36, 1280, 20),
                            "xl": (48, 1600, 25)}[size]
    check_config_sizes({"model_type": "gpt2", "n_layer": layers, "n_embd": width, "n_head": heads,
                        "n_positions": 1024, "n_ctx": 1024, "vocab_size": 50257, "n_inner": None}, f"gpt2-{size}")
    with pytest.raises(BaseModelError, match="n_layer 64 x n_embd 1664 makes about 2,"):  # each size in its cap
        check_config_sizes({"n_layer": 64, "n_embd": 1664, "n_head": 26, "n_positions": 1024, "vocab_size": 50257},
                           "bigger than xl")


@pytest.mark.parametrize(("text", "message"), [
    ("{", "llmsignal_base.json: not valid JSON"), ("[]", "llmsignal_base.json: not a JSON object"),
    ('{"heldout_loss": "low"}', "llmsignal_base.json: not a pretraining record of `llmsignal pretrain`"),
    ('{"heldout_loss": 1.0, "train_loss": 1.0, "config": {"steps": 1}, "corpus": [7]}', "not a pretraining record"),
])
def test_a_malformed_pretraining_record_is_one_line(base, capsys, text, message):
    (base / "llmsignal_base.json").write_text(text)
    _base_info_is_refused(capsys, base, message)


def test_a_good_pretraining_record_still_reads(base, capsys):
    (base / "llmsignal_base.json").write_text(json.dumps({
        "heldout_loss": 1.5, "train_loss": 1.25, "config": {"steps": 3},
        "corpus": [{"name": "s", "source": "x", "bars": 9, "start": "0", "end": "8", "fingerprint": "f"}]}))
    assert main(["base-info", "--base", str(base)]) == 0
    assert "held-out loss 1.5000" in capsys.readouterr().out


@pytest.mark.parametrize(("write", "message"), [
    (lambda p: np.savez(p, s=np.array([{"planted": 1}], dtype=object)), "Object arrays cannot be loaded"),
    (lambda p: np.savez(p, s=np.array([0.5, 1.5])), "'s' is a float64 array of shape (2,), not the 1-D uint64"),
    (lambda p: p.write_bytes(b"not a zip"), "corpus_windows.npz: not the corpus fingerprints"),
])
def test_a_malformed_corpus_fingerprint_file_is_one_line(base, capsys, write, message):
    write(base / "corpus_windows.npz")
    assert "corpus_windows.npz" in _base_info_is_refused(capsys, base, message)


def test_a_tokenizer_that_encodes_the_digits_as_nothing_is_one_line(base, capsys):
    _edit_json(base / "tokenizer.json", lambda t: t.update(
        normalizer={"type": "Replace", "pattern": {"Regex": "[0-9]"}, "content": ""}))
    line = _base_info_is_refused(capsys, base, "needs the digits 0-9 and ',' as one token each")
    assert str(base / "tokenizer.json") in line


@pytest.mark.parametrize("damage", ["claims 2**62 bytes", "header of 2**62 bytes"])
def test_a_base_safetensors_header_claiming_2_62_bytes_is_one_line(base, capsys, damage):
    if damage == "claims 2**62 bytes":
        _edit_header(base / "model.safetensors", _claim_2_62_bytes)
    else:
        _header_length_2_62(base / "model.safetensors")
    _base_info_is_refused(capsys, base, f"{base / 'model.safetensors'}: ")


@pytest.mark.parametrize("content", [{"a": 1}, [1, 2], {"probes": [], "train": {"step": 3}},
                                     {"probes": [{"trial": {}}], "train": None},
                                     {"probes": [], "train": {"model": {}, "optimizer": {}, "rng": {},
                                                              "torch_rng": 0, "step": "3", "losses": []}}])
def test_a_checkpoint_of_plain_values_in_another_structure_is_one_line(tmp_path, content):
    import torch

    from llmsignal.models.entries import _read_checkpoint

    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(RegistryError, match="not a checkpoint of a training"):
        _read_checkpoint(path)
    torch.save({"probes": [], "train": None}, path)  # a search that checkpointed before its first step
    assert _read_checkpoint(path) == {"probes": [], "train": None}
