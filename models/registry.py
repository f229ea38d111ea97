"""The model registry: versioned entries on disk, each a folder with weights and metadata.

    registry/
      eurusd-lora/
        1/  metadata.json  weights.safetensors
        2/  ...

    >>> registry = Registry("registry")
    >>> entry = registry.save("eurusd-lora", {"weights.safetensors": path}, metadata)
    >>> registry.get("eurusd-lora@1").metadata["method"]

An entry appears in one ``rename`` of a fully written folder, so an interrupted
write leaves no entry that loads; versions never change once written. A lock file
serialises writers so that two runs cannot take the same version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

METADATA = "metadata.json"


class RegistryError(ValueError):
    """A missing, corrupted or ambiguous entry."""


@dataclass(frozen=True)
class Entry:
    name: str
    version: int
    path: Path
    metadata: dict

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def file(self, name: str) -> Path:
        return self.path / name

    def verify(self) -> None:
        """Raise ``RegistryError`` unless every weight file matches the hash written with it."""
        for name, expected in self.metadata.get("files", {}).items():
            path = self.path / name
            if not path.exists():
                raise RegistryError(f"entry {self.ref} is incomplete: {name} is missing from {self.path}")
            if file_sha256(path) != expected:
                raise RegistryError(f"entry {self.ref} is corrupted: {name} does not match its hash ({self.path})")


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def save(self, name: str, files: dict[str, Path], metadata: dict) -> Entry:
        """Write a new version of ``name`` holding copies of ``files`` and ``metadata``."""
        if not name or "/" in name or "@" in name or name.startswith("."):
            raise RegistryError(f"invalid entry name {name!r}: use letters, digits, '-' and '_'")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            for target, source in files.items():
                shutil.copyfile(source, staging / target)
            hashes = {target: file_sha256(staging / target) for target in files}
            with self._lock():
                version = max(self.versions(name), default=0) + 1
                full = {**metadata, "name": name, "version": version, "files": hashes,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                (staging / METADATA).write_text(json.dumps(full, indent=2, default=str))
                (self.root / name).mkdir(exist_ok=True)
                staging.rename(self.root / name / str(version))
            return Entry(name, version, self.root / name / str(version), full)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / METADATA).exists())

    def get(self, ref: str) -> Entry:
        """The entry ``name@version``, or the latest version of ``name``."""
        name, _, version = ref.partition("@")
        versions = self.versions(name)
        if not versions:
            known = ", ".join(sorted(e.name for e in self.latest_entries())) or "none"
            raise RegistryError(f"no entry named {name!r} in registry {self.root} (entries: {known})")
        if version and (not version.isdigit() or int(version) not in versions):
            raise RegistryError(f"entry {name!r} has no version {version!r} in {self.root} (versions: {versions})")
        chosen = int(version) if version else versions[-1]
        path = self.root / name / str(chosen)
        try:
            metadata = json.loads((path / METADATA).read_text())
        except json.JSONDecodeError as err:
            raise RegistryError(f"entry {name}@{chosen} has unreadable metadata ({path / METADATA}: {err})") from None
        return Entry(name, chosen, path, metadata)

    def entries(self) -> Iterator[Entry]:
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                for version in self.versions(folder.name):
                    yield self.get(f"{folder.name}@{version}")

    def latest_entries(self) -> list[Entry]:
        latest: dict[str, Entry] = {}
        for entry in self.entries():
            latest[entry.name] = entry
        return list(latest.values())

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
