"""benchmarks/run.py's measuring helpers: paired ratios, alternation, peak flagging and the device path."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from llmsignal.finetune.base import embedded_config, embedded_tokenizer
from llmsignal.finetune.codec import TokenTable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_run"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchmark_run", None)


def test_a_ratio_is_the_median_and_range_of_per_pair_ratios(bench):
    # pair by pair 2/1, 6/2, 9/3: a ratio of the medians (6/2) or of the sums (17/6) would differ
    ratio = bench.Ratio.of([2.0, 6.0, 9.0], [1.0, 2.0, 3.0])
    assert ratio.values == (2.0, 3.0, 3.0)
    assert str(ratio) == "3.00x (2.00–3.00, 3 pairs)"
    assert str(bench.Ratio.of([3.0], [2.0])) == "1.50x (1 pair)"
    assert bench.Ratio((0.58, 0.64, 0.70)).percent() == "64% (58–70%, 3 pairs)"
    with pytest.raises(ValueError, match="pairs"):
        bench.Ratio.of([1.0, 2.0], [1.0])


def test_measures_alternate_and_each_round_holds_one_sample_of_each(bench):
    calls = []
    samples = bench.alternate({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_a_share_of_peak_above_100_percent_is_a_measurement_error_never_a_result(bench):
    assert bench.share_of_peak(bench.Ratio((0.5, 0.6))) == "55% (50–60%, 2 pairs) of peak"
    reported = bench.share_of_peak(bench.Ratio((0.9, 1.91)))
    assert reported.startswith("measurement error: 191% of peak") and "1 of 2 pairs" in reported


def test_a_run_whose_peak_varied_more_than_20_percent_is_flagged(bench, monkeypatch):
    peaks = bench.Peaks(torch.device("cpu"))
    flops = iter([100e9, 119e9, 100e9, 125e9])
    monkeypatch.setattr(bench, "matmul_peak", lambda dev, dtype: next(flops))
    peaks.measure(), peaks.measure()
    assert peaks.variation("float32") == pytest.approx(0.19) and peaks.flagged() == []
    peaks.measure("bfloat16"), peaks.measure("bfloat16")
    assert peaks.flagged() == ["bfloat16"]
    lines = bench.peak_rows(peaks)
    assert len(lines) == 1 and lines[0].startswith("!!! FLAGGED: the bfloat16 matmul peak varied by 25%")


def test_flop_count_charges_weight_gradients_only_to_trainable_weights(bench):
    model = torch.nn.Sequential(torch.nn.Linear(10, 10, bias=False), torch.nn.Linear(10, 10, bias=False))
    assert bench.flop_per_token(model) == 6 * 200
    model[0].weight.requires_grad_(False)
    assert bench.flop_per_token(model) == 4 * 200 + 2 * 100


def test_old_and_new_stage_settings_differ_only_in_dropout_and_precision(bench):
    old, new = bench.stage_configs(30)
    assert (old.dropout, old.precision) == (None, "float32")
    assert new.dropout == 0.0 and new.steps == old.steps == 30
    assert {k for k, v in old.to_dict().items() if new.to_dict()[k] != v} <= {"dropout", "precision"}


def test_cuda_without_a_gpu_exits_in_one_clear_line(bench, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda, but torch .* sees no CUDA device"):
        bench.main(["--device", "cuda"])


def test_cuda_timing_waits_for_the_device_on_both_sides(bench, monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: waited.append(dev))
    assert bench.timed(lambda: None, torch.device("cuda")) >= 0
    assert len(waited) == 2
    bench.timed(lambda: None, torch.device("cpu"))
    assert len(waited) == 2


def test_the_busy_process_runs_for_the_run_and_stops_after_it(bench):
    with bench.beside_load(True) as busy:
        assert busy.poll() is None
    assert busy.poll() is not None
    with bench.beside_load(False) as none:
        assert none is None


def _tiny_model() -> tuple[GPT2LMHeadModel, torch.Tensor]:
    tokenizer = embedded_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(embedded_config(len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=192))
    ids = TokenTable(tokenizer).ids(np.random.default_rng(0).integers(30, 70, size=(2, 9)))
    return model, ids


def test_a_stepper_times_training_steps_with_its_settings(bench):
    model, ids = _tiny_model()
    stepper = bench.Stepper(model, ids, bench.TrainConfig(dropout=0.0), torch.device("cpu"), steps=2)
    assert stepper() > 0 and stepper.tokens_per_second(1.0) == ids.numel() * 2
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    old, _ = _tiny_model()
    bench.Stepper(old, ids, bench.TrainConfig(dropout=None), torch.device("cpu"), steps=1)
    assert {m.p for m in old.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}  # the model's own
    assert bench.matmul_peak(torch.device("cpu"), size=64, bursts=1, seconds=0.001) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_threads_through_to_the_model_and_the_peak(bench):
    model, ids = _tiny_model()
    stepper = bench.Stepper(model, ids, bench.TrainConfig(), torch.device("cuda"), steps=1)
    assert stepper() > 0 and stepper.memory_mb > 0 and next(model.parameters()).device.type == "cuda"
    assert bench.matmul_peak(torch.device("cuda"), size=256, bursts=2, seconds=0.001) > 0


def test_the_full_plan_trains_the_default_budget_in_at_least_two_pairs(bench):
    full, quick = bench.Plan.make(quick=False), bench.Plan.make(quick=True)
    assert (full.stage_steps, quick.stage_steps) == (200, 30)
    assert full.stage_pairs >= 2 and 1 <= quick.stage_pairs <= 2
    assert bench.Plan.make(quick=True, pairs=1).stage_pairs == 1


def test_precision_rows_time_both_formats_alone_or_say_why_not(bench, monkeypatch):
    model, _ = _tiny_model()
    base = bench.Base(model=model, tokenizer=embedded_tokenizer(), spec="tiny", fingerprint="tiny", info={})
    monkeypatch.setattr(bench, "gpt2_small", lambda: _tiny_model()[0])
    timed_formats = []
    stepper = bench.Stepper
    monkeypatch.setattr(bench, "Stepper", lambda m, ids, config, dev, steps: timed_formats.append(
        (config.precision, config.dropout)) or stepper(m, ids, config, dev, steps))
    plan = bench.Plan.make(quick=True, pairs=1)
    bench.ROWS.clear()
    monkeypatch.setattr(bench, "native_bfloat16", lambda dev=None: True)
    bench.bench_precision_steps(base, plan, torch.device("cpu"))
    assert sorted(set(timed_formats)) == [("bfloat16", 0.0), ("float32", 0.0)] and len(timed_formats) == 8
    assert [r[1] for r in bench.ROWS][-1] == "GPT-2 small (124M), lora: float32 / bfloat16 step"
    assert all(r[2].endswith("(1 pair)") for r in bench.ROWS)
    bench.ROWS.clear()
    monkeypatch.setattr(bench, "native_bfloat16", lambda dev=None: False)
    bench.bench_precision_steps(base, plan, torch.device("cpu"))
    assert bench.ROWS == [("train", "float32 / bfloat16 steps", "skipped",
                           "no native bfloat16 here: auto picks float32")]


def test_the_budget_row_times_the_search_against_fixed_steps_in_the_full_plan_only(bench, monkeypatch):
    seen = {}

    def measure(split, base, methods, configs, pairs, peaks):
        seen.update(configs=configs, methods=methods, pairs=pairs)
        seconds = {(m, b): [2.0, 3.0] if b == "converged" else [1.0, 2.0] for m in methods for b in configs}
        return bench.StageSamples(seconds, {}, {key: 1.0 for key in seconds})

    monkeypatch.setattr(bench, "measure_stage", measure)
    bench.ROWS.clear()
    bench.bench_budget_stage(None, bench.Plan.make(quick=True), None)
    assert bench.ROWS[0][2] == "skipped" and not seen
    bench.bench_budget_stage(None, bench.Plan.make(quick=False), None)
    steps, converged = seen["configs"]["steps"], seen["configs"]["converged"]
    assert (steps.steps, steps.eval_every, steps.lr_factors) == (200, 0, (1.0,))
    assert converged.eval_every > 0 and len(converged.lr_factors) > 1 and seen["pairs"] >= 2
    assert bench.ROWS[-1][2] == "1.75x (1.50–2.00, 2 pairs)"  # the stage per pair: 2 s / 1 s, then 3 s / 2 s


def test_prediction_ratios_run_on_one_cpu_thread_and_the_threads_come_back(bench, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_bench_prediction", lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bench.bench_prediction(None, None, None, torch.device("cpu"))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_peak_is_the_fastest_burst_sized_from_one_timed_matmul(bench, monkeypatch):
    times = iter([0.05, 0.2, 0.1, 0.3])  # one warm-up matmul, then three bursts of ceil(0.1 / 0.05) = 2
    monkeypatch.setattr(bench, "timed", lambda work, dev: next(times))
    flops = bench.matmul_peak(torch.device("cpu"), size=8, bursts=3, seconds=0.1)
    assert flops == pytest.approx(2 * 8**3 * 2 / 0.1)
