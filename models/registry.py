"""The model registry: versioned entries on disk, each a folder with weights and metadata.

    registry/
      eurusd-lora/
        1/  metadata.json  weights.safetensors
        2/  ...
        .removed-3         # a tombstone: version 3 was removed and is never reused
      index.sqlite         # a query index over every metadata.json, rebuilt when missing or stale

    >>> registry = Registry("registry")  # doctest: +SKIP
    >>> entry = registry.save("eurusd-lora", {"weights.safetensors": path}, metadata)  # doctest: +SKIP
    >>> registry.get("eurusd-lora@1").metadata["method"]  # doctest: +SKIP
    >>> registry.list_rows()          # name, version, method, ..., status for every version  # doctest: +SKIP
    >>> registry.export("eurusd-lora@1", "out/eurusd-lora")   # a folder another machine imports  # doctest: +SKIP
    >>> registry.import_("out/eurusd-lora")                    # a new version, hashes checked  # doctest: +SKIP
    >>> registry.remove("eurusd-lora@1")                       # or "eurusd-lora" for every version  # doctest: +SKIP

An entry appears in one ``rename`` of a fully written folder, so an interrupted
write leaves no entry that loads; versions never change once written. A lock file
serialises writers so that two runs cannot take the same version, and a removed
version leaves a tombstone so that ``name@N`` never names two different models
(prediction caches are keyed by it). The folders and their ``metadata.json`` are the
truth; ``index.sqlite`` is only a cache of them, so it may be deleted at any time.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

METADATA = "metadata.json"
INDEX = "index.sqlite"
TOMBSTONE = ".removed-"
# what training writes into every entry's "cost" and `registry list` shows
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
# a version folder's name, as save writes it; [0-9] is ASCII only, where str.isdigit() takes '²' and '١' too
VERSION = re.compile(r"[1-9][0-9]{0,17}")
KEY_COSTS = ("trainable_params", "train_seconds", "val_loss")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    name TEXT NOT NULL, version INTEGER NOT NULL, stamp TEXT NOT NULL,
    method TEXT, base TEXT, data TEXT, created TEXT, metadata TEXT, error TEXT,
    PRIMARY KEY (name, version))
"""


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
    def __init__(self, root: str | Path, check: Callable[[dict], object] | None = None,
                 check_files: Callable[[dict, Path], object] | None = None) -> None:
        """``check(metadata)`` raises ``RegistryError`` for an entry that cannot be served: imports refuse it and
        ``list_rows`` reports it; ``check_files(metadata, folder)`` does the same for the files beside it (what a
        loader reads besides metadata.json); without them the registry checks only names, files and hashes."""
        self.root = Path(root)
        self.check = check
        self.check_files = check_files

    def save(self, name: str, files: dict[str, Path], metadata: dict,
             expected: dict[str, str] | None = None) -> Entry:
        """Write a new version of ``name`` holding copies of ``files`` and ``metadata``.

        ``expected`` (file name -> sha256) refuses the write unless the copies hash to it.
        """
        check_name(name)
        for target in files:
            _check_file_name(target)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            for target, source in files.items():
                shutil.copyfile(source, staging / target)
            hashes = {target: file_sha256(staging / target) for target in files}
            for target, digest in (expected or {}).items():
                if hashes.get(target) != digest:
                    raise RegistryError(f"cannot save {name}: {target} does not match its expected hash")
            with self._lock():
                version = max(self._taken_versions(name), default=0) + 1
                full = {**metadata, "name": name, "version": version, "files": hashes,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                (staging / METADATA).write_text(json.dumps(_finite(full), indent=2, default=str, allow_nan=False))
                (self.root / name).mkdir(exist_ok=True)
                staging.rename(self.root / name / str(version))
                self._sync_index_quietly()
            return Entry(name, version, self.root / name / str(version), full)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise RegistryError(f"{self.root}: cannot save {name} ({err.strerror}); nothing partial was left, and "
                                "a training's last checkpoint is kept for --resume") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, ref: str) -> list[str]:
        """Remove ``name@version``, or every version of ``name``; returns the refs removed.

        Each version folder leaves the registry in one rename (into a hidden trash folder
        that is then deleted) and leaves a tombstone, so its number is never given again.
        Corrupted versions (unreadable metadata, bad hashes) can be removed too.
        """
        name, at, version = ref.partition("@")
        check_name(name)  # a name is a folder below the root: never '../x'
        if at and not version:  # "name@" is a slip, not a request to remove every version
            raise RegistryError(f"{ref!r}: give a version after '@', or the bare name to remove every version")
        number = _ref_version(name, version) if version else None
        with self._lock():
            versions = self.versions(name)
            if not versions or (number is not None and number not in versions):
                self.get(ref)  # raises the usual "no entry named ..." / "has no version ..." error
            removed = [number] if number is not None else versions
            for number in removed:
                self._remove_version(name, number)
            self._sync_index_quietly()
        return [f"{name}@{number}" for number in removed]

    def export(self, ref: str, path: str | Path) -> Entry:
        """Write the entry's files and metadata into the folder ``path`` (new, or empty) for ``import_``."""
        entry = self.get(ref)
        entry.verify()  # never ship a corrupted entry: the importer would only refuse it
        path = Path(path)
        if path.is_symlink():  # the export would replace the link, not fill the folder it points to
            raise RegistryError(f"cannot export {entry.ref} to {path}: it is a symbolic link; give a real folder")
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise RegistryError(f"cannot export {entry.ref} to {path}: it exists and is not an empty folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
        try:
            for name in entry.metadata.get("files", {}):
                shutil.copyfile(entry.file(name), staging / name)
            shutil.copyfile(entry.file(METADATA), staging / METADATA)
            staging.chmod(0o755)  # mkdtemp makes it private; an export is meant to be copied and shared
            os.replace(staging, path)  # the export appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return entry

    def import_(self, path: str | Path, name: str | None = None) -> Entry:
        """Store an exported folder as a new version of its name (or ``name``), checking every file's hash."""
        path = Path(path)
        for link in (p for p in path.iterdir() if p.is_symlink()) if path.is_dir() else ():
            raise RegistryError(f"cannot import {path}: {link.name} is a symbolic link; an export holds plain files")
        try:
            metadata = json.loads((path / METADATA).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise RegistryError(f"{path} is not an exported entry: it has no {METADATA}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RegistryError(f"{path / METADATA} is unreadable: {err}") from None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("files"), dict) or "name" not in metadata:
            raise RegistryError(f"{path / METADATA} is not an entry's metadata (no name or files)")
        expected = metadata["files"]
        for file_name, digest in expected.items():
            _check_file_name(file_name)
            if not (path / file_name).is_file():
                raise RegistryError(f"cannot import {path}: {file_name} is missing")
            if file_sha256(path / file_name) != digest:
                raise RegistryError(f"cannot import {path}: {file_name} does not match its hash "
                                    "(corrupted in transit?)")
        try:
            if self.check:
                self.check(metadata)
            if self.check_files:
                self.check_files(metadata, path)
        except RegistryError as err:
            raise RegistryError(f"cannot import {path}: {err}") from None
        origin = {"ref": f"{metadata['name']}@{metadata.get('version')}", "created": metadata.get("created"),
                  "path": str(path.resolve())}
        kept = {k: v for k, v in metadata.items() if k not in ("name", "version", "files", "created")}
        return self.save(name or str(metadata["name"]), {f: path / f for f in expected},
                         {**kept, "imported_from": origin}, expected=expected)

    def list_rows(self, verify: bool = True) -> list[dict]:
        """One row per version, from the index: name, version, method, base, data, created, training cost, status.

        ``status`` is "ok", or "corrupted: <why>" when the metadata is unreadable or a file fails
        ``Entry.verify`` (which reads every file: pass ``verify=False`` for "unverified" and speed).
        """
        if not self.root.is_dir():
            return []
        with closing(self._synced_index()) as db:
            records = db.execute("SELECT name, version, method, base, data, created, metadata, error FROM entries "
                                 "ORDER BY name, version").fetchall()
        damaged = [(name, version, None, None, None, None, None, f"{METADATA} is missing (a damaged version, skipped; "
                    "its number is never reused)") for name, version in self._damaged_versions()]
        rows = [self._row(*record, verify=verify) for record in sorted(records + damaged, key=lambda r: r[:2])]
        return rows + [{"name": name, "version": None, "method": None, "base": None, "data": None, "created": None,
                        **dict.fromkeys(KEY_COSTS), "status": f"foreign: {what!r} is not a version (versions are "
                        "the folders 1, 2, ... that llmsignal writes); skipped"} for name, what in self.foreign()]

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(number for p in folder.iterdir()
                      if (number := _folder_version(p.name)) is not None and (p / METADATA).exists())

    def foreign(self) -> list[tuple[str, str]]:
        """(name, file) for everything in an entry's folder that is not a version: skipped by every command."""
        if not self.root.is_dir():
            return []
        return sorted((folder.name, p.name) for folder in self.root.iterdir()
                      if folder.is_dir() and not folder.name.startswith(".") and NAME.fullmatch(folder.name)
                      for p in folder.iterdir()
                      if not p.name.startswith(".") and _folder_version(p.name) is None)

    def get(self, ref: str) -> Entry:
        """The entry ``name@version``, or the latest version of ``name``."""
        name, _, version = ref.partition("@")
        check_name(name)
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"no entry named {name!r} in registry {self.root} (entries: {known})")
        number = _ref_version(name, version) if version else None
        if number is not None and (self.root / name / str(number)).is_dir() and number not in versions:
            raise RegistryError(f"entry {name}@{number} is damaged: its folder has no {METADATA}")
        if number is not None and number not in versions:
            raise RegistryError(f"entry {name!r} has no version {version!r} in {self.root} (versions: {versions})")
        if number is not None:
            return self._read(name, number)
        for chosen in reversed(versions):  # the latest version that reads; a damaged one is skipped
            try:
                return self._read(name, chosen)
            except RegistryError as err:
                damaged = err
        raise damaged

    def _read(self, name: str, version: int) -> Entry:
        path = self.root / name / str(version)
        try:
            metadata = json.loads((path / METADATA).read_text())
            if not isinstance(metadata, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RegistryError(f"entry {name}@{version} has unreadable metadata ({path / METADATA}: {why})") from None
        return Entry(name, version, path, metadata)

    def names(self) -> list[str]:
        """Names with at least one version (read from the folders: one unreadable entry must not hide the rest)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and self.versions(p.name))

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

    def _remove_version(self, name: str, version: int) -> None:
        """Called under the lock: the folder goes in one rename, then a tombstone keeps its number taken."""
        path = self.root / name / str(version)
        try:
            files = json.loads((path / METADATA).read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            files = {}  # a corrupted entry is still removable; its tombstone just has no hashes
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
        path.rename(trash / "entry")
        tombstone = {"removed": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files}
        _write_atomic(self.root / name / f"{TOMBSTONE}{version}", json.dumps(tombstone))
        shutil.rmtree(trash, ignore_errors=True)

    def _taken_versions(self, name: str) -> list[int]:
        """Every number a version of ``name`` ever had: readable, damaged or removed."""
        folder = self.root / name
        present = [n for p in folder.iterdir() if (n := _folder_version(p.name)) is not None] if folder.is_dir() else []
        return present + self._removed_versions(name)

    def _damaged_versions(self) -> list[tuple[str, int]]:
        """Version folders without metadata: an entry copied in by hand and cut short, say."""
        return sorted((folder.name, number) for folder in self.root.iterdir()
                      if folder.is_dir() and not folder.name.startswith(".")
                      for v in folder.iterdir()
                      if (number := _folder_version(v.name)) is not None and v.is_dir() and not (v / METADATA).exists())

    def _removed_versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        suffixes = (p.name[len(TOMBSTONE):] for p in folder.iterdir() if p.name.startswith(TOMBSTONE))
        return [number for s in suffixes if (number := _folder_version(s)) is not None]

    def _row(self, name: str, version: int, method: str | None, base: str | None, data: str | None,
             created: str | None, metadata: str | None, error: str | None, verify: bool) -> dict:
        meta = json.loads(metadata) if metadata else {}
        cost = meta.get("cost") if isinstance(meta.get("cost"), dict) else {}
        status = f"corrupted: {error}" if error else "ok" if verify else "unverified"
        if verify and not error:
            try:
                Entry(name, version, self.root / name / str(version), meta).verify()
            except RegistryError as err:
                status = f"corrupted: {err}"
        if self.check and not error and not status.startswith("corrupted"):
            try:
                self.check(meta)
                if self.check_files and verify:  # the files are read for their hashes anyway
                    self.check_files(meta, self.root / name / str(version))
            except RegistryError as err:
                status = f"invalid: {err}"
        return {"name": name, "version": version, "method": method, "base": base, "data": data, "created": created,
                **{key: _number(cost.get(key)) for key in KEY_COSTS}, "status": status}

    def _on_disk(self) -> dict[tuple[str, int], str]:
        """Every version folder with a metadata file, and a stamp that changes when that file does."""
        found = {}
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                for version in self.versions(folder.name):
                    stat = (folder / str(version) / METADATA).stat()
                    found[(folder.name, version)] = f"{stat.st_mtime_ns}:{stat.st_size}"
        return found

    def _synced_index(self) -> sqlite3.Connection:
        """The index, first brought in line with the folders (under the lock), or rebuilt if unusable.

        A read-only registry still lists: its index is then built in memory.
        """
        try:
            with self._lock():
                return self._sync_index(self.root / INDEX)
        except (OSError, sqlite3.OperationalError):
            return self._sync_index(":memory:")

    def _sync_index_quietly(self) -> None:
        """Called under the lock after a write: the index is a cache, so failing to update it is not fatal."""
        try:
            self._sync_index(self.root / INDEX).close()
        except (OSError, sqlite3.Error):
            (self.root / INDEX).unlink(missing_ok=True)  # rebuilt by the next list

    def _sync_index(self, target: Path | str) -> sqlite3.Connection:
        try:
            return self._update_index(target)
        except sqlite3.DatabaseError:  # a damaged index file: it only caches the folders, so start afresh
            if isinstance(target, Path):
                target.unlink(missing_ok=True)
            return self._update_index(target)

    def _update_index(self, target: Path | str) -> sqlite3.Connection:
        """Index the folders added or changed since the last update and drop those gone, in one transaction."""
        db = sqlite3.connect(target)
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS entries")
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                db.commit()
            disk = self._on_disk()
            indexed = dict(((n, v), s) for n, v, s in db.execute("SELECT name, version, stamp FROM entries"))
            with db:
                db.executemany("DELETE FROM entries WHERE name = ? AND version = ?", set(indexed) - set(disk))
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [self._index_record(n, v, s) for (n, v), s in disk.items() if indexed.get((n, v)) != s])
            return db
        except BaseException:
            db.close()
            raise

    def _index_record(self, name: str, version: int, stamp: str) -> tuple:
        path = self.root / name / str(version) / METADATA
        try:
            meta = json.loads(path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            return (name, version, stamp, None, None, None, None, None, f"unreadable metadata ({path}: {err})")
        error = None
        if (meta.get("name"), meta.get("version")) != (name, version):
            error = f"metadata names {meta.get('name')}@{meta.get('version')} but the folder is {name}@{version}"
        return (name, version, stamp, _text(meta.get("method")), _text(meta.get("base")), _text(meta.get("data")),
                _text(meta.get("created")), json.dumps(meta, default=str), error)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def check_name(name: str) -> None:
    """Entry names are folder names: 1 to 100 letters, digits, '.', '-' and '_', not starting with '.'."""
    if not NAME.fullmatch(name) or name == INDEX:
        raise RegistryError(f"invalid entry name {name[:40]!r}: use 1 to 100 letters, digits, '.', '-' and '_', "
                            "not starting with '.'")


def _folder_version(name: str) -> int | None:
    """The version a folder (or tombstone suffix) named ``name`` holds; None for anything else, which is foreign."""
    return int(name) if VERSION.fullmatch(name) else None


def _ref_version(name: str, version: str) -> int:
    """The number in ``name@version``: ASCII digits only, so ``fast@١`` (Arabic-Indic one) is not ``fast@1``."""
    if not re.fullmatch(r"[0-9]{1,18}", version):
        raise RegistryError(f"version {version[:40]!r} of {name!r} is not a number in the digits 0-9 "
                            f"(versions are 1, 2, ...: {name}@1)")
    return int(version)


def _check_file_name(name: str) -> None:
    """An entry's files sit directly in its folder: no paths (an imported metadata.json could try '../x')."""
    if not name or name != Path(name).name or name.startswith(".") or name == METADATA:
        raise RegistryError(f"invalid file name {name!r} for a registry entry")


def _finite(value: object) -> object:
    """``value`` with every NaN or infinity replaced by None: metadata is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> float | None:
    """A metric as a finite float, or None (JSON has no NaN, and a missing metric is not zero)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
