"""What a type checker sees: every `llmsignal.*` import resolves, though the subpackages live in top-level folders.

pyright can't follow [tool.setuptools.package-dir]; `make dev` builds build/typing/llmsignal (links to the folders)
and [tool.pyright] extraPaths adds it. These tests fail when that view is missing or maps a folder wrongly.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIEW = ROOT / "build" / "typing" / "llmsignal"
PYRIGHT = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
UNRESOLVED = re.compile(r'^Import "(llmsignal(\.[\w.]+)?)" could not be resolved')


def _package_dir() -> dict[str, str]:
    """[tool.setuptools.package-dir]: each import name and its folder."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11) or tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-dir"]


def test_the_view_links_each_subpackage_to_its_folder():
    assert VIEW.is_dir(), "no build/typing/llmsignal: `make dev` builds it"
    links = {p.name: p.resolve() for p in VIEW.iterdir() if p.is_symlink() and p.is_dir()}
    assert links == {name.removeprefix("llmsignal."): (ROOT / folder).resolve()
                     for name, folder in _package_dir().items() if name != "llmsignal"}
    assert (VIEW / "__init__.py").resolve() == (ROOT / "llmsignal" / "__init__.py").resolve()


@pytest.fixture(scope="module")
def pyright_report(tmp_path_factory) -> dict:
    """pyright over the package with the project's config, in an empty environment.

    Empty: the only way to `llmsignal.*` is then the project's own mapping, not an llmsignal that some environment
    installed; and no third-party package is analysed (transformers alone is 4,000 files), so it takes seconds.
    """
    if PYRIGHT is None:
        pytest.skip("pyright is not installed: `make dev` installs it with the dev extra")
    if shutil.which("node") is None:
        pytest.skip("pyright runs on node, and there is no node on PATH")
    envs = tmp_path_factory.mktemp("envs")  # [tool.pyright] names venv ".venv": --venvpath points it here
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(envs / ".venv")], check=True)
    folders = sorted(set(_package_dir().values()))
    run = subprocess.run([PYRIGHT, "--outputjson", "--venvpath", str(envs), *folders], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"})
    assert run.returncode in (0, 1), run.stdout[-2000:] + run.stderr[-2000:]  # 1: errors found; 2, 3: it failed
    return json.loads(run.stdout)


def test_pyright_resolves_every_llmsignal_import(pyright_report):
    missing = [f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: {d['message']}"
               for d in pyright_report["generalDiagnostics"] if UNRESOLVED.match(d["message"])]
    assert missing == [], f"{len(missing)} unresolved (is build/typing there? `make dev`):\n" + "\n".join(missing)


def test_pyright_did_check_the_imports(pyright_report):  # the test above would pass on a run that checked nothing
    package_files = sum(len(list((ROOT / folder).glob("*.py"))) for folder in set(_package_dir().values()))
    assert pyright_report["summary"]["filesAnalyzed"] >= package_files
    others = {d["message"] for d in pyright_report["generalDiagnostics"] if d.get("rule") == "reportMissingImports"}
    assert 'Import "pandas" could not be resolved' in others  # the empty environment, and the rule reports
