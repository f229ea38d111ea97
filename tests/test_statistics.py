import numpy as np
import pytest
from scipy import signal, stats

from llmsignal.backtests.metrics import direction
from llmsignal.backtests.significance import (
    _hac_test,
    block_length,
    bootstrap_ci,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    diebold_mariano,
    directional_accuracy_ci,
    dm_bandwidth,
    expected_max_normal,
    expected_max_sharpe,
    holm,
    loss_differential_test,
    probabilistic_sharpe_ratio,
    relative_mse_ci,
    sharpe_ci,
    sharpe_loss_pvalue,
    sharpe_pvalue,
    verdict,
)


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shocks, x = rng.normal(size=n), np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + shocks[t]
    return x


def _ar1_rows(phi: float, rows: int, n: int = 600, seed: int = 0, burn: int = 200) -> np.ndarray:
    """``rows`` stationary AR(1) series with unit shocks (marginal sd 1 / sqrt(1 - phi^2)), one per row."""
    shocks = np.random.default_rng(seed).normal(size=(rows, n + burn))
    return signal.lfilter([1.0], [1.0, -phi], shocks, axis=1)[:, burn:]


# Diebold-Mariano

def test_dm_identical_forecasts_give_zero_and_one():
    errors = np.random.default_rng(0).normal(size=300)
    assert diebold_mariano(errors, errors) == (0.0, 1.0)
    assert diebold_mariano(errors, errors.copy(), horizon=3, loss="absolute") == (0.0, 1.0)


def test_dm_strongly_negative_when_a_is_much_more_accurate():
    rng = np.random.default_rng(1)
    statistic, p = diebold_mariano(rng.normal(0, 0.5, 500), rng.normal(0, 1.0, 500))
    assert statistic < -8
    assert p < 1e-10


def test_dm_swapping_a_and_b_flips_sign_keeps_p():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1.0, 250), rng.normal(0, 1.1, 250)
    for horizon, loss in [(1, "squared"), (4, "absolute")]:
        forward, p_forward = diebold_mariano(a, b, horizon=horizon, loss=loss)
        backward, p_backward = diebold_mariano(b, a, horizon=horizon, loss=loss)
        assert forward != 0
        assert backward == pytest.approx(-forward)
        assert p_backward == pytest.approx(p_forward)


def test_dm_with_no_lag_weighted_is_the_paired_t_test_on_losses():
    # A bandwidth of 1 weights lag 0 alone: the fixed-b reference is then exactly Student t(n-1).
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1.0, 120), rng.normal(0.1, 1.0, 120)
    expected = stats.ttest_rel(a**2, b**2)
    statistic, p = _hac_test(a**2 - b**2, 1.0)
    assert statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert p == pytest.approx(expected.pvalue, rel=1e-10)


def test_dm_keeps_its_size_when_loss_differentials_are_ar1_and_still_finds_a_shift():
    """Issue 28's bar, 600 bars, 400 samples each: at 5%, at most 8% of nulls rejected at phi 0.5 and 12% at
    0.8 (the paired t-test: 26% and 52%), and at least 90% of shifts of 0.3 marginal sd at phi 0.5."""
    def rejected(phi: float, shift_sd: float, seed: int) -> float:
        rows = _ar1_rows(phi, 400, seed=seed) + shift_sd / np.sqrt(1 - phi**2)
        return float(np.mean([loss_differential_test(d, np.zeros_like(d))[1] < 0.05 for d in rows]))

    assert rejected(0.5, 0.0, seed=50) <= 0.08
    assert rejected(0.8, 0.0, seed=80) <= 0.12
    assert rejected(0.5, 0.3, seed=53) >= 0.90


def test_dm_keeps_its_size_under_ma1_losses_at_either_horizon():
    # MA(1) loss differential with mean zero: the paired t-test (the old horizon-1 DM) rejects ~17% at 5%.
    rng = np.random.default_rng(4)
    rejections, paired = {1: 0, 2: 0}, 0
    for _ in range(300):
        noise = rng.normal(size=201)
        model, naive = 10 + noise[1:] + noise[:-1], np.full(200, 10.0)
        for horizon in rejections:
            rejections[horizon] += diebold_mariano(model, naive, horizon=horizon, loss="absolute")[1] < 0.05
        paired += stats.ttest_1samp(np.abs(model) - np.abs(naive), 0).pvalue < 0.05
    assert paired / 300 > 0.12
    assert rejections[1] / 300 < 0.09
    assert rejections[2] / 300 < 0.09


def test_dm_fixed_b_reference_holds_the_level_at_a_wide_bandwidth():
    # Independent Gaussian differentials, bandwidth 10% of the bars: normal critical values would reject
    # about 8% at 5%; the fixed-b reference holds 5% (and 1%).
    p = np.array([_hac_test(d, 20.0)[1] for d in np.random.default_rng(14).normal(size=(2000, 200))])
    assert 0.04 <= np.mean(p < 0.05) <= 0.06
    assert np.mean(p < 0.01) <= 0.015


def test_dm_bandwidth_follows_the_dependence_and_the_horizon():
    iid, persistent = _ar1_rows(0.0, 1, seed=15)[0], _ar1_rows(0.8, 1, seed=15)[0]
    assert 1 <= dm_bandwidth(iid) < 6
    assert dm_bandwidth(persistent) > 30
    assert dm_bandwidth(iid, horizon=8) >= 8
    assert dm_bandwidth(np.r_[np.zeros(5), np.ones(5)]) <= 10  # never more lags than bars


def test_dm_drops_nan_pairs_and_handles_constant_differential():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=100), rng.normal(size=100)
    with_gaps_a, with_gaps_b = a.copy(), b.copy()
    with_gaps_a[[3, 50]], with_gaps_b[70] = np.nan, np.nan
    keep = np.ones(100, dtype=bool)
    keep[[3, 50, 70]] = False
    assert diebold_mariano(with_gaps_a, with_gaps_b) == pytest.approx(diebold_mariano(a[keep], b[keep]))
    assert diebold_mariano(np.full(50, 1.0), np.full(50, 2.0), loss="absolute") == (-np.inf, 0.0)
    with pytest.raises(ValueError, match="loss"):
        diebold_mariano(a, b, loss="huber")
    with pytest.raises(ValueError, match="same length"):
        diebold_mariano(a, b[:-1])


# Stationary bootstrap (arch), BCa intervals

def test_bootstrap_ci_contains_the_sample_statistic_and_is_reproducible():
    x = _ar1(500, 0.5, seed=6) + 0.3
    low, high = bootstrap_ci(x, np.mean)
    assert low < x.mean() < high
    assert bootstrap_ci(x, np.mean) == (low, high)
    assert bootstrap_ci(x, np.mean, seed=1) != (low, high)
    low_median, high_median = bootstrap_ci(x, np.median, reps=300)
    assert low_median < np.median(x) < high_median


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(7)
    small, large = rng.normal(size=200), rng.normal(size=2000)
    width_small = np.subtract(*bootstrap_ci(small, np.mean)[::-1])
    width_large = np.subtract(*bootstrap_ci(large, np.mean)[::-1])
    assert width_large < 0.5 * width_small  # ~1/sqrt(10) expected


def test_bootstrap_ci_of_iid_mean_covers_the_truth():
    x = np.random.default_rng(8).normal(0.1, 1.0, 2000)
    low, high = bootstrap_ci(x, np.mean)
    assert low < 0.1 < high
    assert low > 0  # the mean is ~4.5 standard errors from zero
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.25)


def test_the_block_length_follows_the_dependence():
    assert block_length(_ar1(1000, 0.8, seed=9)) > 5 * block_length(np.random.default_rng(9).normal(size=1000))
    # a persistent series' interval is wide, as its effective sample is small
    x = _ar1(1000, 0.8, seed=9)
    low, high = bootstrap_ci(x, np.mean)
    assert high - low > 2 * 2 * 1.96 * x.std() / np.sqrt(len(x))


def test_a_series_that_never_moves_has_no_interval():
    assert all(np.isnan(bootstrap_ci(np.full(60, 0.01), np.mean)))


def test_directional_accuracy_ci_ignores_flat_bars():
    rng = np.random.default_rng(10)
    moved = rng.choice([-1.0, 1.0], 2000)
    called = np.where(rng.random(2000) < 0.6, moved, -moved)
    low, high = directional_accuracy_ci(called, moved)
    assert 0.5 < low < 0.6 < high
    # Bars where the forecast or the market was flat are not counted, so adding them changes nothing.
    at = [5, 100, 700]
    flat_called, flat_moved = np.insert(called, at, [0.0, 1.0, 0.0]), np.insert(moved, at, [1.0, 0.0, 0.0])
    assert directional_accuracy_ci(flat_called, flat_moved) == (low, high)
    assert directional_accuracy_ci(called * 0.003, moved * 0.002) == (low, high)  # moves work as well as signs


def test_sharpe_ci_is_annualised_and_contains_the_point_sharpe():
    returns = np.random.default_rng(11).normal(0.001, 0.01, 2600)
    point = returns.mean() / returns.std(ddof=1) * np.sqrt(260)
    low, high = sharpe_ci(returns)
    assert low < point < high
    assert low > 0.5  # annualised units (260 FX days a year); a per-period interval would sit near 0.1
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(260 / 2600), rel=0.3)


def test_relative_mse_interval_resamples_both_mses_on_the_same_bars():
    # Errors half the reference's, bar by bar: every resample's MSE ratio is about 0.25, so the interval of
    # MSE / reference MSE - 1 is narrow around -0.75. Holding the reference's MSE fixed widens it tenfold.
    rng = np.random.default_rng(13)
    reference = _ar1(1000, 0.3, seed=13) * np.exp(rng.normal(0, 0.5, 1000))  # clustered, fat-tailed errors
    errors = 0.5 * reference * (1 + 0.01 * rng.normal(size=1000))
    low, high = relative_mse_ci(errors, reference, reps=300)
    assert low < np.mean(errors**2) / np.mean(reference**2) - 1 < high
    assert high - low < 0.01
    # independent forecasts of equal accuracy: an interval around zero, neither one told better
    other = rng.normal(size=1000)
    low, high = relative_mse_ci(rng.normal(size=1000), other, reps=300)
    assert low < 0 < high and 0.1 < high - low < 0.4
    gaps = errors.copy()
    gaps[[3, 70]] = np.nan
    assert relative_mse_ci(gaps, reference, reps=300) == relative_mse_ci(np.delete(errors, [3, 70]),
                                                                          np.delete(reference, [3, 70]), reps=300)
    assert all(np.isnan(relative_mse_ci(errors[:50], np.zeros(50))))


# Deflated Sharpe

def test_deflated_sharpe_reproduces_the_paper_example():
    # Bailey & López de Prado (2014), numerical example: annualised SR 2.5 over 5 years of daily
    # returns (T=1250, 250 days a year), N=100 trials with annualised Sharpe variance 0.5,
    # skew -3, kurtosis 10. The paper reports E[max SR] ~ 0.1132 (per day) and DSR ~ 0.9004 with its
    # Euler-Mascheroni approximation of E[max]; the exact expectation is 1% lower, the DSR a little higher.
    variance = 0.5 / 250
    assert expected_max_sharpe(100, variance) == pytest.approx(0.1132, rel=0.015)
    dsr = deflated_sharpe_ratio(2.5 / np.sqrt(250), n_trials=100, n_obs=1250, skew=-3, kurtosis=10,
                                sharpe_variance=variance)
    assert dsr == pytest.approx(0.9004, abs=0.01)


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_the_expected_maximum_of_normals_is_exact(n):
    simulated = np.random.default_rng(n).normal(size=(400_000, n)).max(axis=1).mean()
    assert expected_max_normal(n) == pytest.approx(simulated, abs=0.01)
    assert expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-9)


def test_one_trial_is_the_psr_against_zero_by_hand():
    sharpe, n_obs, skew, kurtosis = 0.05, 500, -0.5, 5.0
    by_hand = stats.norm.cdf(sharpe * np.sqrt(n_obs - 1) / np.sqrt(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2))
    assert deflated_sharpe_ratio(sharpe, 1, n_obs, skew, kurtosis) == pytest.approx(by_hand, rel=1e-12)
    assert probabilistic_sharpe_ratio(sharpe, 0.0, n_obs, skew, kurtosis) == pytest.approx(by_hand, rel=1e-12)


def test_dsr_falls_as_trials_grow_and_stays_a_probability():
    values = [deflated_sharpe_ratio(0.08, n, 1000, skew=0.0, kurtosis=3.0) for n in (1, 2, 10, 100, 1000)]
    assert all(0 < v < 1 for v in values)
    assert (np.diff(values) < 0).all()
    assert values[0] > 0.99 and values[-1] < 0.9


def test_negative_skew_and_fat_tails_lower_the_dsr():
    normal = deflated_sharpe_ratio(0.08, 10, 1000, skew=0.0, kurtosis=3.0)
    assert deflated_sharpe_ratio(0.08, 10, 1000, skew=-2.0, kurtosis=12.0) < normal
    with pytest.raises(ValueError, match="non-excess"):
        deflated_sharpe_ratio(0.9, 10, 1000, skew=3.0, kurtosis=0.0)


def test_dsr_from_returns_matches_moments_and_uses_trial_spread():
    returns = np.random.default_rng(12).standard_t(5, 1500) * 0.01 + 0.0008
    sharpe = returns.mean() / returns.std(ddof=1)
    by_moments = deflated_sharpe_ratio(sharpe, 20, 1500, stats.skew(returns), stats.kurtosis(returns, fisher=False))
    assert deflated_sharpe_from_returns(returns, 20) == pytest.approx(by_moments)
    tight = deflated_sharpe_from_returns(returns, 20, trial_sharpes=[0.01, 0.012, 0.011, 0.013])
    wide = deflated_sharpe_from_returns(returns, 20, trial_sharpes=[-0.08, 0.0, 0.08, 0.05])
    assert wide < tight
    assert np.isnan(deflated_sharpe_from_returns(np.full(100, 0.001), 5))


def test_sharpe_loss_pvalue_is_the_mirror_of_sharpe_pvalue():
    returns = np.random.default_rng(16).standard_t(5, 500) * 0.01 - 0.0015
    assert sharpe_loss_pvalue(returns) < 0.01 < 0.99 < sharpe_pvalue(returns)
    assert sharpe_loss_pvalue(-returns) > 0.99
    # the Sharpe's standard error at SR = 0: a one-sided t-test of the mean return
    assert sharpe_loss_pvalue(returns) == pytest.approx(stats.ttest_1samp(returns, 0, alternative="less").pvalue)
    long = np.random.default_rng(17).normal(-0.0002, 0.01, 20_000)  # on long Gaussian samples, 1 - sharpe_pvalue
    assert sharpe_loss_pvalue(long) == pytest.approx(1 - sharpe_pvalue(long), abs=1e-3)
    assert np.isnan(sharpe_loss_pvalue(np.full(50, 0.001)))


def test_holm_adjusted_sharpe_loss_is_rarely_significant_across_zero_skill_rows():
    # 8 rows of 54 zero-mean, fat-tailed (t6) daily returns, 2,000 times: "loses money" is a family-wise 5%
    # claim. Uncorrected, some row says so in a third of the families; with PSR's form (the skew and
    # kurtosis terms at the sample's SR) in 7%.
    returns = np.random.default_rng(18).standard_t(6, size=(2000, 8, 54)) * 0.005
    pvalues = np.array([[sharpe_loss_pvalue(row) for row in family] for family in returns])
    assert np.mean((pvalues < 0.05).any(axis=1)) > 0.25
    assert np.mean([np.nanmin(holm(family)) < 0.05 for family in pvalues]) <= 0.055


# Multiple rows: Holm, Pesaran-Timmermann, the verdict's words

def test_holm_matches_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    expected = np.maximum.accumulate(np.sort(p) * np.arange(4, 0, -1))[np.argsort(np.argsort(p))]
    np.testing.assert_allclose(holm(p), np.minimum(expected, 1))
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == 0.01  # NaN is no test


def test_pesaran_timmermann():
    rng = np.random.default_rng(3)
    moved = rng.choice([-1.0, 1.0], 2000, p=[0.45, 0.55])
    always_up = direction(np.ones(2000), moved)
    assert always_up["directional_accuracy"] == pytest.approx(always_up["da_base_rate"]) and always_up["da_pvalue"] == 1
    skilled = direction(np.where(rng.random(2000) < 0.6, moved, -moved), moved)
    assert skilled["da_pvalue"] < 1e-6
    guessing = direction(rng.choice([-1.0, 1.0], 2000), moved)
    assert guessing["da_pvalue"] > 0.01


@pytest.mark.parametrize(("args", "expected"), [
    ((0.5, 0.30, 0.9, -0.4, 0.9, 0.2), "no evidence of edge"),
    ((-3.0, 0.01, 0.9, -0.4, 0.9, 0.2), "beats naive (Holm p=0.01)"),
    ((3.0, 0.01, 0.9, -0.4, 0.9, 0.2), "worse than naive (Holm p=0.01)"),
    ((0.5, 0.40, 0.001, 0.2, 1.8, 0.97), "evidence of edge (Holm p=0.001, DSR 0.97)"),
    ((0.5, 0.40, 0.001, 0.2, 1.8, 0.80), "no evidence of edge"),  # does not survive deflation
    ((0.5, 0.40, 0.20, 0.2, 1.8, 0.99), "no evidence of edge"),  # does not survive Holm
    ((-5.0, 0.0001, 0.01, 0.2, 1.8, 0.99), "beats naive (Holm p<0.001); evidence of edge (Holm p=0.01, DSR 0.99)"),
    ((-5.0, float("nan"), float("nan"), -0.4, 0.9, float("nan")), "no evidence of edge"),
])
def test_verdict(args, expected):
    assert verdict(*args) == expected
    assert verdict(*args, in_confidence_set=True) == expected + "; in the confidence set of the most accurate"


@pytest.mark.parametrize(("high", "loss_holm", "expected"), [
    (-0.1, 0.01, "loses money (Holm p=0.01, Sharpe CI -2.00 to -0.10)"),
    (-0.1, 0.2, "no evidence of edge"),  # its own interval is below zero, but not after Holm
    (-0.1, float("nan"), "no evidence of edge"),  # no test across the rows
    (0.3, 0.01, "no evidence of edge"),  # its interval reaches zero
])
def test_loses_money_needs_the_holm_adjusted_test(high, loss_holm, expected):
    assert verdict(0.5, 0.5, 0.9, -2.0, high, 0.0, sharpe_loss_holm=loss_holm) == expected
