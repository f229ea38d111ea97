import hashlib
import json

import pytest

from llmsignal.models.registry import Registry, RegistryError


def _weights(tmp_path, content=b"weights"):
    path = tmp_path / "w.bin"
    path.write_bytes(content)
    return path


def test_versions_are_new_folders(tmp_path):
    registry = Registry(tmp_path / "reg")
    first = registry.save("eurusd-lora", {"weights.safetensors": _weights(tmp_path)}, {"method": "lora"})
    second = registry.save("eurusd-lora", {"weights.safetensors": _weights(tmp_path, b"other")}, {"method": "lora"})
    assert (first.version, second.version) == (1, 2)
    assert registry.get("eurusd-lora").version == 2
    assert registry.get("eurusd-lora@1").file("weights.safetensors").read_bytes() == b"weights"


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    registry = Registry(tmp_path / "reg")
    registry.save("m", {"weights.safetensors": _weights(tmp_path)}, {"method": "full"})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("llmsignal.models.registry.file_sha256", boom)
    with pytest.raises(KeyboardInterrupt):
        registry.save("m", {"weights.safetensors": _weights(tmp_path)}, {"method": "full"})
    assert registry.versions("m") == [1]
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".staging")]


def test_corrupted_weights_are_refused(tmp_path):
    registry = Registry(tmp_path / "reg")
    entry = registry.save("m", {"weights.safetensors": _weights(tmp_path)}, {"method": "full"})
    entry.verify()
    entry.file("weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="corrupted"):
        registry.get("m").verify()


def test_unknown_entry_and_version(tmp_path):
    registry = Registry(tmp_path / "reg")
    registry.save("m", {"weights.safetensors": _weights(tmp_path)}, {"method": "full"})
    with pytest.raises(RegistryError, match="entries: m"):
        registry.get("nope")
    with pytest.raises(RegistryError, match="no version '7'"):
        registry.get("m@7")


def test_metadata_is_written_with_hashes(tmp_path):
    registry = Registry(tmp_path / "reg")
    entry = registry.save("m", {"weights.safetensors": _weights(tmp_path)}, {"method": "full"})
    meta = json.loads((entry.path / "metadata.json").read_text())
    weights = (entry.path / "weights.safetensors").read_bytes()
    assert meta["files"]["weights.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert meta["version"] == 1 and meta["method"] == "full"
