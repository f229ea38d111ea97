"""The benchmark harness (paired ratios, alternation, peaks, the table) and the benchmark definitions."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2LMHeadModel

from benchmarks import harness
from benchmarks import run as bench
from benchmarks.harness import Peaks, Ratio, Table, alternate, flop_per_token, matmul_peak, share_of_peak, timed
from benchmarks.synthetic import loaded_bars, synthetic_bars
from llmsignal.data import load_bars
from llmsignal.finetune.base import Base, embedded_config, embedded_tokenizer
from llmsignal.finetune.codec import TokenTable
from llmsignal.finetune.train import TrainConfig, TrainStep, train


def test_a_ratio_is_the_median_and_range_of_per_pair_ratios():
    # pair by pair 2/1, 6/2, 9/3: a ratio of the medians (6/2) or of the sums (17/6) would differ
    ratio = Ratio.of([2.0, 6.0, 9.0], [1.0, 2.0, 3.0])
    assert ratio.values == (2.0, 3.0, 3.0)
    assert str(ratio) == "3.00x (2.00–3.00, 3 pairs)"
    assert str(Ratio.of([3.0], [2.0])) == "1.50x (1 pair)"
    assert Ratio((0.58, 0.64, 0.70)).percent() == "64% (58–70%, 3 pairs)"
    with pytest.raises(ValueError, match="pairs"):
        Ratio.of([1.0, 2.0], [1.0])


def test_measures_alternate_and_each_round_holds_one_sample_of_each():
    calls = []
    samples = alternate({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


def test_a_share_of_peak_above_100_percent_is_a_measurement_error_never_a_result():
    assert share_of_peak(Ratio((0.5, 0.6))) == "55% (50–60%, 2 pairs) of peak"
    reported = share_of_peak(Ratio((0.9, 1.91)))
    assert reported.startswith("measurement error: 191% of peak") and "1 of 2 pairs" in reported


def test_a_run_whose_peak_varied_more_than_20_percent_is_flagged(monkeypatch):
    peaks = Peaks(torch.device("cpu"))
    flops = iter([100e9, 119e9, 100e9, 125e9])
    monkeypatch.setattr(harness, "matmul_peak", lambda dev, dtype: next(flops))
    peaks.measure(), peaks.measure()
    assert peaks.variation("float32") == pytest.approx(0.19) and peaks.flagged() == []
    peaks.measure("bfloat16"), peaks.measure("bfloat16")
    assert peaks.flagged() == ["bfloat16"]
    table = Table()
    lines = table.peak_rows(peaks)
    assert len(lines) == 1 and lines[0].startswith("!!! FLAGGED: the bfloat16 matmul peak varied by 25%")
    assert [r[3].endswith("FLAGGED (> 20%)") for r in table.rows] == [False, True]


def test_the_table_prints_every_row_aligned_under_its_header_and_flags(capsys):
    table = Table()
    table.row("train", "short", "1.00x")
    table.row("predict", "a longer measure", "12.34x (1 pair)", "note")
    table.print(["CPU: test"], ["!!! FLAGGED: test"])
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == ["CPU: test", "!!! FLAGGED: test"] and out[4].endswith("note  [FLAGGED: peak varied > 20%]")
    assert out[5].index("1.00x") + len("1.00x") == out[6].index("(1 pair)") + len("(1 pair)")  # right-aligned


def test_flop_count_charges_weight_gradients_only_to_trainable_weights():
    model = torch.nn.Sequential(torch.nn.Linear(10, 10, bias=False), torch.nn.Linear(10, 10, bias=False))
    assert flop_per_token(model) == 6 * 200
    model[0].weight.requires_grad_(False)
    assert flop_per_token(model) == 4 * 200 + 2 * 100


def test_cuda_without_a_gpu_exits_in_one_clear_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda, but torch .* sees no CUDA device"):
        bench.main(["--device", "cuda"])


def test_cuda_timing_counts_the_work_and_its_kernels_but_not_kernels_queued_before_it(monkeypatch):
    clock, queued = [0.0], [5.0]  # 5 s of kernels queued before the timed work

    def synchronize(dev=None):  # waits until every queued kernel has run
        clock[0] += queued[0]
        queued[0] = 0.0

    def work():  # 1 s on the host, queuing 2 s of kernels
        clock[0] += 1.0
        queued[0] += 2.0

    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(harness, "perf_counter", lambda: clock[0])
    assert timed(work, torch.device("cuda")) == 3.0  # 8 with the earlier kernels, 1 without its own
    queued[0] = 5.0
    assert timed(work, torch.device("cpu")) == 1.0 and queued[0] == 7.0  # a CPU never synchronises


def test_the_busy_process_runs_for_the_run_and_stops_after_it():
    with harness.beside_load(True) as busy:
        assert busy.poll() is None
    assert busy.poll() is not None
    with harness.beside_load(False) as none:
        assert none is None


def _tiny_model() -> tuple[GPT2LMHeadModel, torch.Tensor]:
    tokenizer = embedded_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(embedded_config(len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=192))
    ids = TokenTable(tokenizer).ids(np.random.default_rng(0).integers(30, 70, size=(2, 9)))
    return model, ids


def test_a_stepper_times_training_steps_with_its_settings():
    model, ids = _tiny_model()
    stepper = bench.Stepper(model, ids, TrainConfig(dropout=0.0), torch.device("cpu"), steps=2)
    assert stepper() > 0 and stepper.tokens_per_second(1.0) == ids.numel() * 2
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    old, _ = _tiny_model()
    bench.Stepper(old, ids, TrainConfig(dropout=None), torch.device("cpu"), steps=1)
    assert {m.p for m in old.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}  # the model's own
    assert matmul_peak(torch.device("cpu"), size=64, bursts=1, seconds=0.001) > 0


def test_train_and_the_benchmarks_take_the_same_training_step(monkeypatch):
    taken = []
    step = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, ids: taken.append(tuple(ids.shape)) or step(self, ids))
    model, ids = _tiny_model()
    bins = np.random.default_rng(1).integers(30, 70, size=200)
    result = train(model, TokenTable(embedded_tokenizer()), [bins], [bins],
                   TrainConfig(steps=2, batch_size=3, window=9, warmup=1), lr=1e-3, desc="test")
    assert taken == [(3, 3 * 9)] * 2 and len(result.loss_history) == 2  # 3 windows of 9 values, 3 tokens each
    stepper = bench.Stepper(_tiny_model()[0], ids, TrainConfig(), torch.device("cpu"), steps=3)
    taken.clear()
    stepper()
    assert taken == [tuple(ids.shape)] * 3


def test_a_training_step_moves_only_the_trainable_weights():
    model, ids = _tiny_model()
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith(".bias"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with TrainStep(model, TrainConfig(), lr=1e-2, dev=torch.device("cpu")) as step:
        loss = step(ids)
    assert torch.isfinite(loss) and not loss.requires_grad
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert moved and all(n.endswith(".bias") for n in moved)
    assert all(p.grad is None for p in model.parameters())  # gradients cleared for the next step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_threads_through_to_the_model_and_the_peak():
    model, ids = _tiny_model()
    stepper = bench.Stepper(model, ids, TrainConfig(), torch.device("cuda"), steps=1)
    assert stepper() > 0 and stepper.memory_mb > 0 and next(model.parameters()).device.type == "cuda"
    assert matmul_peak(torch.device("cuda"), size=256, bursts=2, seconds=0.001) > 0


def test_the_full_plan_trains_the_default_budget_in_at_least_two_pairs():
    full, quick = bench.Plan.make(quick=False), bench.Plan.make(quick=True)
    assert (full.stage_steps, quick.stage_steps) == (200, 30)
    assert full.stage_pairs >= 2 and 1 <= quick.stage_pairs <= 2
    assert bench.Plan.make(quick=True, pairs=1).stage_pairs == 1


def test_the_stage_rows_time_the_default_run_at_the_plans_steps(monkeypatch):
    seen = {}

    def measure(split, base, methods, configs, pairs, peaks):
        seen.update(configs=configs, methods=methods, pairs=pairs)
        return bench.StageSamples({(m, "steps"): [1.0, 3.0] for m in methods},
                                  {(m, "steps"): [0.1, 0.2] for m in methods}, {(m, "steps"): 1.5 for m in methods})

    monkeypatch.setattr(bench, "measure_stage", measure)
    monkeypatch.setattr(bench, "stage_split", lambda: None)
    bench.TABLE.rows.clear()
    bench.bench_train_stage(None, bench.Plan.make(quick=True), None)
    config, = seen["configs"].values()
    assert (config.steps, config.eval_every, config.dropout) == (30, 0, 0.0) and seen["pairs"] == 2
    assert seen["methods"] == ["full", "lora", "adapter", "scratch"]
    assert [r[1] for r in bench.TABLE.rows] == [f"stage, {m}: seconds" for m in seen["methods"]] + [
        "stage, all 4: seconds"]
    assert bench.TABLE.rows[0][2] == "2.0 (1.0–3.0)" and bench.TABLE.rows[-1][2] == "8.0 (4.0–12.0)"
    assert "15% (10–20%, 2 pairs) of peak" in bench.TABLE.rows[0][3]


def test_precision_rows_time_both_formats_alone_or_say_why_not(monkeypatch):
    model, _ = _tiny_model()
    base = Base(model=model, tokenizer=embedded_tokenizer(), spec="tiny", fingerprint="tiny", info={})
    monkeypatch.setattr(bench, "gpt2_small", lambda: _tiny_model()[0])
    timed_formats = []
    stepper = bench.Stepper
    monkeypatch.setattr(bench, "Stepper", lambda m, ids, config, dev, steps: timed_formats.append(
        (config.precision, config.dropout)) or stepper(m, ids, config, dev, steps))
    plan = bench.Plan.make(quick=True, pairs=1)
    bench.TABLE.rows.clear()
    monkeypatch.setattr(bench, "native_bfloat16", lambda dev=None: True)
    bench.bench_precision_steps(base, plan, torch.device("cpu"))
    assert sorted(set(timed_formats)) == [("bfloat16", 0.0), ("float32", 0.0)] and len(timed_formats) == 8
    assert [r[1] for r in bench.TABLE.rows][-1] == "GPT-2 small (124M), lora: float32 / bfloat16 step"
    assert all(r[2].endswith("(1 pair)") for r in bench.TABLE.rows)
    bench.TABLE.rows.clear()
    monkeypatch.setattr(bench, "native_bfloat16", lambda dev=None: False)
    bench.bench_precision_steps(base, plan, torch.device("cpu"))
    assert bench.TABLE.rows == [("train", "float32 / bfloat16 steps", "skipped",
                                 "no native bfloat16 here: auto picks float32")]


def test_the_budget_row_times_the_search_against_fixed_steps_in_the_full_plan_only(monkeypatch):
    seen = {}

    def measure(split, base, methods, configs, pairs, peaks):
        seen.update(configs=configs, methods=methods, pairs=pairs)
        seconds = {(m, b): [2.0, 3.0] if b == "converged" else [1.0, 2.0] for m in methods for b in configs}
        return bench.StageSamples(seconds, {}, {key: 1.0 for key in seconds})

    monkeypatch.setattr(bench, "measure_stage", measure)
    monkeypatch.setattr(bench, "stage_split", lambda: None)
    bench.TABLE.rows.clear()
    bench.bench_budget_stage(None, bench.Plan.make(quick=True), None)
    assert bench.TABLE.rows[0][2] == "skipped" and not seen
    bench.bench_budget_stage(None, bench.Plan.make(quick=False), None)
    steps, converged = seen["configs"]["steps"], seen["configs"]["converged"]
    assert (steps.steps, steps.eval_every, steps.lr_factors) == (200, 0, (1.0,))
    assert converged.eval_every > 0 and len(converged.lr_factors) > 1 and seen["pairs"] >= 2
    assert bench.TABLE.rows[-1][2] == "1.75x (1.50–2.00, 2 pairs)"  # the stage per pair: 2 s / 1 s, then 3 s / 2 s


def test_prediction_ratios_run_on_one_cpu_thread_and_the_threads_come_back(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "_bench_prediction", lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bench.bench_prediction(None, None, None, torch.device("cpu"))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_peak_is_the_fastest_burst_sized_from_one_timed_matmul(monkeypatch):
    times = iter([0.05, 0.2, 0.1, 0.3])  # one warm-up matmul, then three bursts of ceil(0.1 / 0.05) = 2
    monkeypatch.setattr(harness, "timed", lambda work, dev: next(times))
    flops = matmul_peak(torch.device("cpu"), size=8, bursts=3, seconds=0.1)
    assert flops == pytest.approx(2 * 8**3 * 2 / 0.1)


def test_the_synthetic_bars_read_from_their_file_are_the_loaded_bars(tmp_path):
    synthetic_bars(300, seed=4).to_csv(tmp_path / "bars.csv")
    read, loaded = load_bars(tmp_path / "bars.csv"), loaded_bars(300, seed=4)
    pd.testing.assert_frame_equal(read, loaded, check_dtype=False, check_freq=False, rtol=1e-12)
    assert not loaded.equals(loaded_bars(300, seed=5))


@pytest.mark.parametrize(("method", "reweights"), [("full", True), ("lora", True), ("adapter", False),
                                                   ("houlsby", False), ("parallel", False), ("ia3", False)])
def test_the_race_tells_which_methods_can_reweight_attention(tiny_base, method, reweights):
    """The race's reason for a method short of the target rests on this split: LoRA and full change attention's
    projections; IA3 only rescales them and bottleneck adapters sit beside them."""
    from benchmarks.fair_race import reweights_attention
    from llmsignal.finetune.base import load_base
    from llmsignal.finetune.methods import get_model, make_method

    assert reweights_attention(get_model(load_base(tiny_base).model, make_method(method))) == reweights
