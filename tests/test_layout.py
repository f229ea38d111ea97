"""One import name, and imports that follow the data flow: bars → finetune → models → strategies → backtests."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import synthetic_bars

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"finetune": "finetune", "models": "models", "strategies": "strategies", "backtests": "backtests",
           "llmsignal": "llmsignal"}
# what each stage may import; the CLI and orchestration (llmsignal.*) sit above them all
ALLOWED = {"finetune": {"finetune"}, "models": {"models", "finetune"}, "strategies": {"strategies"},
           "backtests": {"backtests", "strategies"}}


def _modules() -> dict[str, set[str]]:
    """Every module of the package, by its installed name, and the llmsignal modules it imports."""
    graph = {}
    for stage, folder in FOLDERS.items():
        for path in (ROOT / folder).glob("*.py"):
            package = "llmsignal" if stage == "llmsignal" else f"llmsignal.{stage}"
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            imported = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmsignal"):
                    imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
                elif isinstance(node, ast.Import):
                    imported |= {a.name for a in node.names if a.name.startswith("llmsignal")}
            graph[name] = imported
    return {name: {i for i in imports if i in graph and i != name} for name, imports in graph.items()}


def _stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 and module.split(".")[1] in ALLOWED else "llmsignal"


def test_each_stage_imports_only_what_comes_before_it():
    wrong = [(m, i) for m, imports in _modules().items() if _stage(m) in ALLOWED
             for i in imports if _stage(i) not in ALLOWED[_stage(m)]]
    assert wrong == []


def test_no_module_imports_one_that_imports_it_back():
    graph = _modules()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    assert [m for m in graph if reaches(m, m, {m})] == []


def test_the_graph_sees_imports():  # the two tests above would pass on an empty graph
    graph = _modules()
    assert "llmsignal.finetune.codec" in graph["llmsignal.models.entries"]
    assert "llmsignal.strategies" in graph["llmsignal.backtests.engine"]


def test_only_llmsignal_is_installed_and_a_users_own_models_and_strategies_do_not_collide(tmp_path, tiny_base):
    """From a folder with packages of its own called models and strategies, the CLI still runs its own code."""
    for name in ("models", "strategies", "finetune", "backtests"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    data = tmp_path / "bars.csv"
    synthetic_bars(400).to_csv(data)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # as if the user's project were on the path
    bare = subprocess.run([sys.executable, "-c", "import models"], cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "No module named 'models'" in bare.stderr or "user's own models" in bare.stderr
    run = subprocess.run([sys.executable, "-m", "llmsignal", "run", "--quick", "--data", str(data), "--base",
                          tiny_base, "--methods", "lora", "--registry", str(tmp_path / "reg"), "--out",
                          str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "out" / "comparison.csv").exists()


@pytest.mark.parametrize("name", ["models", "strategies", "finetune", "backtests"])
def test_the_old_top_level_names_are_not_installed(name, tmp_path):
    probe = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert probe.returncode != 0 and f"No module named '{name}'" in probe.stderr


def test_the_command_line_starts_without_the_ml_libraries():
    """`llmsignal --help` answers at once: torch, transformers and pandas load where a command uses them."""
    probe = subprocess.run([sys.executable, "-c", "import sys, llmsignal.cli; print(sorted({'torch', 'pandas', "
                            "'transformers', 'peft', 'backtrader', 'matplotlib'} & set(sys.modules)))"],
                           capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


def test_python_m_llmsignal_without_the_install_says_what_to_do():
    """From the repo root, a Python without the install (here: no site-packages) finds the folder llmsignal/ only."""
    probe = subprocess.run([sys.executable, "-S", "-m", "llmsignal", "--help"], capture_output=True, text=True,
                           cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    lines = probe.stderr.strip().splitlines()
    assert probe.returncode == 2 and len(lines) == 1 and "make run" in lines[0], probe.stderr
