"""``llmsignal registry ...`` and the registry's index, removal, export and import; corrupted entries refused."""

import functools
import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pytest

from llmsignal.cli import main
from llmsignal.data import load_bars
from llmsignal.models.entries import ENTRY_FORMAT, WEIGHTS
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import INDEX, Registry, RegistryError
from tests.conftest import TINY_CONTEXT as CONTEXT
from tests.conftest import tiny_entries


@functools.cache
def _weights(tag: bytes) -> bytes:
    """Real bottleneck-adapter weights for the embedded base (the registry checks every tensor against the base),
    different bytes for each ``tag``."""
    import torch
    from safetensors.torch import save

    from llmsignal.finetune.base import load_base
    from llmsignal.finetune.methods import get_model, make_method, trainable_state

    torch.manual_seed(int.from_bytes(hashlib.sha256(tag).digest()[:4], "little"))
    model = get_model(load_base("embedded").model, make_method("adapter"))
    return save({k: (v + torch.randn_like(v) * 1e-3).contiguous() for k, v in trainable_state(model).items()})


def _save(registry, name="m", content=b"weights", **metadata):
    source = registry.root.parent / "source.bin"
    source.write_bytes(_weights(content))
    # metadata an entry of this version could be served from (bottleneck adapters keep weights.safetensors)
    return registry.save(name, {WEIGHTS: source}, {"format": ENTRY_FORMAT, "method": "adapter", "method_params": {},
                                                   "codec": {"step": 1e-4, "context": 16},
                                                   "train_config": {"seed": 0}, "base": "embedded", "data": "bars.csv",
                                                   **metadata})


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def registry(tmp_path):
    return Registry(tmp_path / "reg")


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    """A real tiny entry, and bars to forecast with it."""
    entries, _, path = tiny_entries(tmp_path_factory.mktemp("regcli"), tiny_base, bars=400, prefix="real")
    return entries["lora"], path


def test_list_shows_every_version_with_its_training_cost_and_status(registry, capsys):
    _save(registry, cost={"val_loss": 0.98765, "train_seconds": 1.5, "trainable_params": float("nan")})
    _save(registry, content=b"other")
    rows = registry.list_rows()
    assert [(r["name"], r["version"], r["method"], r["status"]) for r in rows] == [("m", 1, "adapter", "ok"),
                                                                                  ("m", 2, "adapter", "ok")]
    assert (rows[0]["val_loss"], rows[0]["train_seconds"], rows[0]["trainable_params"]) == (0.98765, 1.5, None)
    assert rows[1]["val_loss"] is None and rows[0]["created"] and rows[0]["base"] == "embedded"
    code, out, _ = _cli(capsys, "registry", "list", "--registry", str(registry.root))
    header, first, second = out.splitlines()
    assert code == 0 and header.split()[:3] == ["name", "version", "method"] and header.split()[-1] == "status"
    assert first.split()[:3] == ["m", "1", "adapter"] and "0.9877" in first and first.endswith("ok")
    assert second.split()[:2] == ["m", "2"] and " - " in second
    assert _cli(capsys, "registry", "list", "--no-verify", "--registry", str(registry.root))[1].count("unverified") == 2


def test_an_empty_registry_lists_nothing(tmp_path, capsys):
    code, out, _ = _cli(capsys, "registry", "list", "--registry", str(tmp_path / "none"))
    assert code == 0 and "no entries" in out


def test_show_prints_the_metadata(registry, capsys):
    entry = _save(registry, cost={"val_loss": 0.9})
    code, out, _ = _cli(capsys, "registry", "show", "m@1", "--registry", str(registry.root))
    assert code == 0 and json.loads(out) == entry.metadata
    code, _, err = _cli(capsys, "registry", "show", "m@9", "--registry", str(registry.root))
    assert code == 2 and err.startswith("llmsignal: error:") and "no version '9'" in err


def test_rm_removes_a_version_or_a_name_and_never_reuses_numbers(registry, capsys):
    for content in (b"a", b"b", b"c"):
        _save(registry, content=content)
    code, out, _ = _cli(capsys, "registry", "rm", "m@3", "--registry", str(registry.root))
    assert code == 0 and "m@3" in out and registry.versions("m") == [1, 2]
    assert _save(registry, content=b"d").version == 4  # m@3 named other weights: a cache keyed by it must not hit
    code, out, _ = _cli(capsys, "registry", "rm", "m", "--registry", str(registry.root))
    assert code == 0 and "m@1, m@2, m@4" in out and registry.versions("m") == [] and registry.list_rows() == []
    assert _save(registry).version == 5
    code, _, err = _cli(capsys, "registry", "rm", "nope", "--registry", str(registry.root))
    assert code == 2 and "no entry named 'nope'" in err
    code, _, err = _cli(capsys, "registry", "rm", "m@", "--registry", str(registry.root))
    assert code == 2 and "give a version after '@'" in err and registry.versions("m") == [5]


def test_export_import_round_trip(registry, tmp_path, capsys):
    entry = _save(registry, cost={"val_loss": 0.9}, request_key="abc")
    out_dir = tmp_path / "exported"
    code, _, _ = _cli(capsys, "registry", "export", "m", str(out_dir), "--registry", str(registry.root))
    assert code == 0 and sorted(p.name for p in out_dir.iterdir()) == ["metadata.json", WEIGHTS]
    other = Registry(tmp_path / "other")
    _save(other, name="m", content=b"unrelated")
    code, out, _ = _cli(capsys, "registry", "import", str(out_dir), "--registry", str(other.root))
    imported = other.get("m")
    assert code == 0 and "as m@2" in out and imported.version == 2
    assert imported.file(WEIGHTS).read_bytes() == _weights(b"weights")
    assert imported.metadata["files"] == entry.metadata["files"] and imported.metadata["request_key"] == "abc"
    assert imported.metadata["imported_from"]["ref"] == "m@1" and imported.metadata["cost"] == {"val_loss": 0.9}
    imported.verify()
    again = registry.import_(out_dir, name="copy")
    assert again.ref == "copy@1" and [r["status"] for r in registry.list_rows()] == ["ok", "ok"]


def test_export_refuses_a_non_empty_target(registry, tmp_path):
    _save(registry)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(RegistryError, match="not an empty folder"):
        registry.export("m", tmp_path / "busy")
    (tmp_path / "empty").mkdir()
    registry.export("m", tmp_path / "empty")
    assert (tmp_path / "empty" / WEIGHTS).exists()


def test_import_checks_every_hash_and_file_name(registry, tmp_path, capsys):
    _save(registry)
    out_dir = tmp_path / "exported"
    registry.export("m", out_dir)
    (out_dir / WEIGHTS).write_bytes(b"flipped bits")
    other = tmp_path / "other"
    code, _, err = _cli(capsys, "registry", "import", str(out_dir), "--registry", str(other))
    assert code == 2 and "does not match its hash" in err and Registry(other).versions("m") == []
    meta = json.loads((out_dir / "metadata.json").read_text())
    meta["files"] = {"../escape.bin": meta["files"][WEIGHTS]}
    (out_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RegistryError, match="invalid file name"):
        Registry(other).import_(out_dir)
    with pytest.raises(RegistryError, match="no metadata.json"):
        Registry(other).import_(tmp_path)


def test_the_index_follows_the_folders_and_is_rebuilt_when_missing(registry):
    _save(registry, cost={"val_loss": 0.9})
    _save(registry, name="n")
    index = registry.root / INDEX
    assert _indexed(index) == [("m", 1), ("n", 1)]  # updated on save
    index.unlink()
    assert [(r["name"], r["version"]) for r in registry.list_rows()] == [("m", 1), ("n", 1)]
    assert _indexed(index) == [("m", 1), ("n", 1)]  # rebuilt
    shutil.rmtree(registry.root / "n")  # changed behind the registry's back: the index is stale
    meta_path = registry.root / "m" / "1" / "metadata.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "cost": {"val_loss": 0.5}}))
    rows = registry.list_rows(verify=False)
    assert [(r["name"], r["val_loss"]) for r in rows] == [("m", 0.5)] and _indexed(index) == [("m", 1)]
    index.write_bytes(b"not a database at all" * 100)
    assert len(registry.list_rows()) == 1 and _indexed(index) == [("m", 1)]
    registry.remove("m@1")
    assert _indexed(index) == []  # updated on remove


def _indexed(index):
    with sqlite3.connect(index) as db:
        return db.execute("SELECT name, version FROM entries ORDER BY name, version").fetchall()


def test_unreadable_metadata_is_listed_as_corrupted_and_can_be_removed(registry, capsys):
    _save(registry)
    (registry.root / "m" / "1" / "metadata.json").write_text("{ truncated")
    code, out, _ = _cli(capsys, "registry", "list", "--registry", str(registry.root))
    assert code == 0 and "corrupted: unreadable metadata" in out
    with pytest.raises(RegistryError, match="entries: m"):  # the error still names what exists
        registry.get("other")
    assert _cli(capsys, "registry", "rm", "m@1", "--registry", str(registry.root))[0] == 0
    assert registry.list_rows() == []


def test_a_copied_folder_is_not_taken_for_another_version(registry):
    _save(registry)
    shutil.copytree(registry.root / "m" / "1", registry.root / "m" / "7")
    assert registry.list_rows()[1]["status"] == "corrupted: metadata names m@1 but the folder is m@7"


def test_real_entry_round_trip_forecasts_the_same(trained, tmp_path):
    entry, data = trained
    Registry(entry.path.parent.parent).export(entry.ref, tmp_path / "out")
    imported = Registry(tmp_path / "reg").import_(tmp_path / "out")
    closes = load_bars(data)["close"].to_numpy()
    ends = np.arange(CONTEXT, CONTEXT + 5)
    np.testing.assert_array_equal(Predictor.from_entry(imported).forecast(closes, ends)[0],
                                  Predictor.from_entry(entry).forecast(closes, ends)[0])


def test_a_corrupted_entry_is_listed_and_refused_by_predict_and_serve(trained, tmp_path, capsys):
    entry, data = trained
    Registry(entry.path.parent.parent).export(entry.ref, tmp_path / "out")
    registry = Registry(tmp_path / "reg")
    copy = registry.import_(tmp_path / "out")
    weights = copy.file("adapter_model.safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    code, out, _ = _cli(capsys, "registry", "list", "--registry", str(registry.root))
    assert code == 0 and f"corrupted: entry {copy.ref} is corrupted: {weights.name} does not match its hash" in out
    code, _, err = _cli(capsys, "predict", "--entry", copy.ref, "--registry", str(registry.root), "--data", str(data),
                        "--out", str(tmp_path / "f.csv"))
    assert code == 2 and "llmsignal: error:" in err and "is corrupted" in err
    code, _, err = _cli(capsys, "serve", "--entry", copy.ref, "--registry", str(registry.root), "--port", "0")
    assert code == 2 and "llmsignal: error:" in err and "is corrupted" in err
    with pytest.raises(RegistryError, match="is corrupted"):
        registry.export(copy.ref, tmp_path / "again")


def test_serve_refuses_an_exposed_host_without_a_key(registry, capsys):
    _save(registry)
    code, _, err = _cli(capsys, "serve", "--entry", "m", "--registry", str(registry.root), "--host", "0.0.0.0")
    assert code == 2 and err.strip().startswith("llmsignal: error: refusing to listen on 0.0.0.0")
    code, _, err = _cli(capsys, "serve", "--entry", "nope", "--registry", str(registry.root))
    assert code == 2 and "no entry named 'nope'" in err
