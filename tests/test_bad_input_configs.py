"""Issue #29: config files, sweep budgets, seeds and dates: one line each, before any work.

Run configs (``run --config``) and sweep configs are read by one reader: bounded in size and in YAML alias
expansion, decoded by their byte-order mark.
"""

import time
from pathlib import Path

import pytest

from llmsignal import sweep
from llmsignal.cli import build_parser, main
from llmsignal.config_file import defaults_from_file
from llmsignal.sweep import SweepError

# 9 levels of 9 aliases: 9**9 = 387 million values once expanded, in 10 lines
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # a flag's value refused while parsing: still one line
        code = stop.code
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("llmsignal: error: "), err[-1500:]
    return lines[0]


def _sweep(capsys, config: Path) -> tuple[int, str]:
    return _cli(capsys, "sweep", config, "--out", config.parent / "out", "--registry", config.parent / "reg")


def _nothing_written(folder: Path) -> None:
    assert not (folder / "out").exists() and not (folder / "reg").exists()


def test_an_alias_bomb_in_a_run_config_is_refused_at_once(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"{BOMB}methods: *a9\n")
    started = time.perf_counter()
    code, err = _cli(capsys, "run", "--config", config, "--out", tmp_path / "out", "--registry", tmp_path / "reg")
    assert time.perf_counter() - started < 5
    line = _one_line(err)
    assert code == 2 and str(config) in line and "aliases expand to over 10,000 values" in line
    _nothing_written(tmp_path)


def test_an_alias_bomb_in_a_sweep_config_is_refused_at_once(tmp_path, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text(f"{BOMB}methods: [lora]\nparams: {{lora: {{r: *a9}}}}\n")
    started = time.perf_counter()
    code, err = _sweep(capsys, config)
    assert time.perf_counter() - started < 5
    assert code == 2 and "aliases expand to over 10,000 values" in _one_line(err)
    _nothing_written(tmp_path)


def test_a_few_aliases_still_read(tmp_path):
    config = tmp_path / "grid.yaml"
    config.write_text("methods: [lora, ia3]\nbudget: &b {steps: 3, batch_size: 4}\nseeds: &s [0, 1]\n")
    grid = sweep.load_grid(config)
    assert grid.methods == ["lora", "ia3"] and grid.seeds == [0, 1] and grid.budget["steps"] == 3


def test_an_alias_that_contains_itself_is_refused(tmp_path, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text("methods: &m [lora, *m]\n")
    code, err = _sweep(capsys, config)
    assert code == 2 and "an alias refers to the value that contains it" in _one_line(err)


def test_an_oversized_config_is_refused(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("methods: dora\n" + "#" * 2**20 + "\n")  # an unknown method: no work even unrefused
    code, err = _cli(capsys, "run", "--config", config, "--out", tmp_path / "out", "--registry", tmp_path / "reg")
    assert code == 2 and "over 1,048,576 bytes" in _one_line(err)


SWEEP = "methods: [lora]\nseeds: [3]\nbudget: {steps: 2, quick: true}\n"
RUN = "methods: [lora, ia3]\nsteps: 7\nseed: 4\n"


def _encoded(text: str, encoding: str) -> bytes:
    """``text`` as an editor saves it: with the byte-order mark of its encoding."""
    return b"\xfe\xff" + text.encode(encoding) if encoding == "utf-16-be" else text.encode(encoding)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_configs_in_any_unicode_encoding_with_a_byte_order_mark_read(tmp_path, encoding):
    (tmp_path / "grid.yaml").write_bytes(_encoded(SWEEP, encoding))
    grid = sweep.load_grid(tmp_path / "grid.yaml")
    assert grid.methods == ["lora"] and grid.seeds == [3] and grid.budget == {"steps": 2, "quick": True}
    (tmp_path / "grid.json").write_bytes(_encoded('{"methods": ["lora"], "seeds": [3]}', encoding))
    assert sweep.load_grid(tmp_path / "grid.json").seeds == [3]
    (tmp_path / "run.yaml").write_bytes(_encoded(RUN, encoding))
    parser = build_parser()
    assert defaults_from_file(tmp_path / "run.yaml", parser.run_parser) == {"methods": "lora,ia3", "steps": 7,
                                                                             "seed": 4}


@pytest.mark.parametrize("data", [b"methods: [lora]\nsteps: \x80\x81\n", b"m\x00e\x00t\x00h\x00o\x00d\x00s\x00"])
def test_undecodable_bytes_are_one_line_naming_the_file(tmp_path, capsys, data):
    (tmp_path / "run.yaml").write_bytes(data)
    code, err = _cli(capsys, "run", "--config", tmp_path / "run.yaml", "--out", tmp_path / "out")
    line = _one_line(err)
    assert code == 2 and str(tmp_path / "run.yaml") in line and "save it as UTF-8" in line
    (tmp_path / "grid.yaml").write_bytes(data)
    code, err = _sweep(capsys, tmp_path / "grid.yaml")
    line = _one_line(err)
    assert code == 2 and str(tmp_path / "grid.yaml") in line and "save it as UTF-8" in line
    _nothing_written(tmp_path)


@pytest.mark.parametrize(("value", "message"), [
    ("-5", "budget.steps: must be at least 1, got -5"), ("0", "budget.steps: must be at least 1, got 0"),
    ("2.5", "budget.steps: must be a whole number, got '2.5'"), ("true", "budget.steps: must be a whole number"),
    ("[3]", "budget.steps: must be a whole number")])
def test_a_sweep_budget_obeys_the_rules_of_run_steps(tmp_path, capsys, value, message):
    config = tmp_path / "grid.yaml"
    config.write_text(f"methods: [lora]\nbudget: {{steps: {value}, quick: true}}\n")
    with pytest.raises(SweepError, match=message.replace("[", r"\[")):
        sweep.load_grid(config)
    code, err = _sweep(capsys, config)
    assert code == 2 and message in _one_line(err)
    _nothing_written(tmp_path)
    config.write_text(f"methods: [lora]\nbudget: {{batch_size: {value}}}\n")
    with pytest.raises(SweepError, match="budget.batch_size: must be"):
        sweep.load_grid(config)


def test_the_same_rule_as_run_steps(tmp_path, capsys):
    code, err = _cli(capsys, "run", "--steps", "-5", "--out", tmp_path / "out")
    assert code == 2 and "must be at least 1, got -5" in err  # the rule the sweep's budget now shares


@pytest.mark.parametrize("seed", ["-1", "1.5", "abc", str(2**32), "9" * 5000])
def test_a_bad_seed_is_one_line_before_any_work(tmp_path, capsys, bars_csv, tiny_base, seed):
    tiny = ["--quick", "--data", bars_csv, "--base", tiny_base, "--registry", tmp_path / "reg"]
    code, err = _cli(capsys, "train", "--method", "lora", "--seed", seed, *tiny)
    line = _one_line(err)
    assert code == 2 and line.startswith("llmsignal: error: --seed: must be a whole number from 0 to 4294967295")
    assert not (tmp_path / "reg").exists()
    code, err = _cli(capsys, "run", "--methods", "lora", "--seed", seed, "--out", tmp_path / "out", *tiny)
    assert code == 2 and "--seed: must be a whole number" in _one_line(err)
    _nothing_written(tmp_path)


def test_a_bad_seed_in_a_run_config_is_one_line(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("seed: -1\n")
    code, err = _cli(capsys, "run", "--config", tmp_path / "run.yaml", "--out", tmp_path / "out")
    assert code == 2 and "run.yaml: seed: must be a whole number from 0 to 4294967295, got -1" in _one_line(err)


def test_good_seeds_and_dates_still_parse():
    parser = build_parser()
    assert parser.parse_args(["train", "--method", "lora", "--seed", "7"]).seed == 7
    assert parser.parse_args(["train", "--method", "lora"]).seed == 0
    assert parser.parse_args(["run", "--seed", str(2**32 - 1)]).seed == 2**32 - 1
    args = parser.parse_args(["predict", "--entry", "m", "--out", "f.csv", "--start", "2024-03-01 14:00"])
    assert args.start == "2024-03-01 14:00"
    assert parser.parse_args(["predict", "--entry", "m", "--out", "f.csv"]).start is None


@pytest.mark.parametrize("start", ["not-a-date", "2024-13-45", ""])
def test_a_bad_start_is_one_line_before_any_work(tmp_path, capsys, start):
    code, err = _cli(capsys, "predict", "--entry", "m", "--start", start, "--registry", tmp_path / "reg",
                     "--out", tmp_path / "f.csv")
    line = _one_line(err)
    assert code == 2 and line.startswith("llmsignal: error: --start: ") and "is not a date" in line
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "reg").exists()
