"""The pooled Diebold-Mariano test: one verdict from many instruments' per-bar losses (issue 32)."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.pooled_dm_size import as_series, concat_nw, panel, pooled
from llmsignal.backtests.significance import loss_differential_test, pooled_loss_differential_test

TIMES = pd.date_range("2024-01-01", periods=300, freq="h")


@pytest.mark.parametrize("phi,shift,horizon", [(0.0, 0.0, 1), (0.6, 0.1, 1), (0.8, 0.3, 3)])
def test_one_instrument_is_the_single_instrument_test_exactly(phi, shift, horizon):
    d = panel(phi, 0.0, shift, len(TIMES), 1, seed=7)[:, 0]
    d[[5, 90]] = np.nan  # gaps are dropped by both
    single = loss_differential_test(d, np.zeros_like(d), horizon)
    assert pooled_loss_differential_test({"EURUSD": pd.Series(d, TIMES)}, horizon) == single


def test_instruments_in_step_carry_no_more_evidence_than_one():
    """Two instruments with the same differential on every bar: the same mean and the same p-value as one of
    them (stacking them as independent bars would halve the variance)."""
    d = pd.Series(panel(0.5, 0.0, 0.15, len(TIMES), 1, seed=3)[:, 0], TIMES)
    one = pooled_loss_differential_test({"a": d})
    two = pooled_loss_differential_test({"a": d, "b": d.copy()})
    assert two == pytest.approx(one, rel=1e-9)
    assert concat_nw({"a": d, "b": d.copy()}) < one[1]  # what naive stacking would claim


def test_independent_instruments_add_evidence():
    shifted = panel(0.0, 0.0, 0.12, len(TIMES), 4, seed=11)
    alone = loss_differential_test(shifted[:, 0], np.zeros(len(TIMES)))[1]
    together = pooled_loss_differential_test({f"i{k}": pd.Series(shifted[:, k], TIMES) for k in range(4)})[1]
    assert together < alone


def test_instruments_on_different_spans_are_pooled_over_their_union():
    d = panel(0.3, 0.5, 0.0, len(TIMES), 2, seed=5)
    late = pd.Series(d[150:, 1], TIMES[150:])
    stat, p = pooled_loss_differential_test({"early": pd.Series(d[:, 0], TIMES), "late": late})
    assert np.isfinite(stat) and 0 < p < 1
    with pytest.raises(ValueError, match="no instruments"):
        pooled_loss_differential_test({})
    assert pooled_loss_differential_test({"a": pd.Series([0.0, 0.0, 0.0], TIMES[:3])}) == (0.0, 1.0)


def test_pooled_keeps_its_size_when_instruments_move_together_and_stacking_does_not():
    """Two instruments, AR(1) differentials (phi 0.5) correlated 0.7 across instruments, no true difference,
    200 panels of 400 bars: the pooled test rejects near 5% at 5%, stacking them as one series far more."""
    samples = [as_series(panel(0.5, 0.7, 0.0, 400, 2, seed=900 + k), 0) for k in range(200)]
    assert np.mean([pooled(s) < 0.05 for s in samples]) <= 0.085
    assert np.mean([concat_nw(s) < 0.05 for s in samples]) >= 0.09
