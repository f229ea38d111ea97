"""Forecast distributions: the scores are right, the baselines fit on training only, the verdict reads the tests."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from arch import arch_model
from scipy import integrate
from scipy.stats import norm, spearmanr, t

from benchmarks.synthetic import stochastic_volatility_bars
from llmsignal.backtests.evaluation import significance
from llmsignal.backtests.metrics import (
    bin_values,
    crps,
    distribution_losses,
    distribution_scores,
    log_score,
    probability_integral_transform,
)
from llmsignal.backtests.significance import holm
from llmsignal.finetune.bars import check_bars, split_bars
from llmsignal.models.baselines import BASELINES, BaselineSkipped, garch, har_range, har_windows
from llmsignal.models.distribution import BIN_COLUMNS, FORECAST_COLUMNS, QUANTILES, binned_frame, distribution_frame

STEP = 1e-4


def garch_bars(n: int, seed: int = 0, alpha: float = 0.1, beta: float = 0.87, vol: float = 1e-3):
    """Hourly bars of a zero-mean Gaussian GARCH(1,1), and the true standard deviation of each bar's next return."""
    rng = np.random.default_rng(seed)
    variance, returns, sigmas = vol**2, np.empty(n), np.empty(n)
    for i in range(n):
        sigmas[i] = np.sqrt(variance)
        returns[i] = sigmas[i] * rng.standard_normal()
        variance = vol**2 * (1 - alpha - beta) + alpha * returns[i] ** 2 + beta * variance
    close = 1.1 * np.exp(np.cumsum(np.r_[0.0, returns[:-1]]))  # close[t + 1] = close[t] * exp(returns[t])
    open_ = np.r_[close[0], close[:-1]]
    wicks = np.abs(rng.normal(0, 0.5, (2, n))) * np.r_[sigmas[0], sigmas[:-1]]  # a range for har-range to read
    index = pd.date_range("2022-01-03", periods=n, freq="h")
    bars = check_bars(pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * np.exp(wicks[0]),
                                    "low": np.minimum(open_, close) * np.exp(-wicks[1]), "close": close},
                                   index=index), "sim")
    return bars, sigmas


def test_crps_of_bins_spread_across_their_width_is_the_integral_of_its_squared_cdf_gap():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(100, 0.3), size=4)
    centres = bin_values(100, np.full(4, STEP))
    outcomes = np.array([0.0, 7.3 * STEP, -61 * STEP, 80 * STEP])  # inside the grid, and beyond both ends
    exact = crps(probs, np.full(4, STEP), outcomes)
    for row, outcome in enumerate(outcomes):
        edges = np.r_[centres[row] - STEP / 2, centres[row, -1] + STEP / 2]
        cumulative = np.r_[0.0, np.cumsum(probs[row])]
        cdf = lambda x, edges=edges, cumulative=cumulative: np.interp(x, edges, cumulative)  # noqa: E731
        gap = lambda x, outcome=outcome, cdf=cdf: (cdf(x) - (x >= outcome)) ** 2  # noqa: E731
        low, high = min(edges[0], outcome) - STEP, max(edges[-1], outcome) + STEP
        brute, _ = integrate.quad(gap, low, high, points=[*edges, outcome], limit=500)
        assert exact[row] == pytest.approx(brute, rel=1e-6)


def test_sigma_reads_the_bins_as_every_score_does_and_one_bin_is_never_zero():
    probs = np.zeros((1, 100))
    probs[0, 50] = 1.0  # all mass in "no change": a uniform across one bin, not a point
    row = binned_frame(np.array([1.0]), probs, step=STEP).iloc[0]
    assert row["sigma"] == pytest.approx(STEP / np.sqrt(12))
    frame = binned_frame(np.array([1.0, 1.0]), np.vstack([probs, probs]), step=STEP)
    assert np.isfinite(distribution_losses(frame)["qlike"]).all()


def test_log_score_of_a_known_distribution():
    probs = np.zeros((2, 100))
    probs[:, 49], probs[:, 50], probs[:, 51] = 0.2, 0.5, 0.3
    # the bin of +1.2 steps is bin 51 (0.3), of -0.6 steps bin 49 (0.2); density = probability / width
    got = log_score(probs, np.full(2, STEP), np.array([1.2 * STEP, -0.6 * STEP]))
    np.testing.assert_allclose(got, np.log([0.3 / STEP, 0.2 / STEP]))
    # a Gaussian put on the grid scores its own log density (bins a tenth of its width apart)
    close = pd.Series([1.0, 1.0])
    frame = distribution_frame(close, norm(loc=0.0, scale=10 * STEP), STEP)
    probs, outcomes = frame[BIN_COLUMNS].to_numpy(), np.array([3.0 * STEP, -17.0 * STEP])
    np.testing.assert_allclose(log_score(probs, np.full(2, STEP), outcomes),
                               norm.logpdf(outcomes, scale=10 * STEP), atol=2e-3)


def test_the_true_models_90_percent_interval_covers_90_percent_and_its_pit_is_uniform():
    bars, sigmas = garch_bars(20_000, seed=1)
    close = bars["close"]
    true = distribution_frame(close, norm(loc=0.0, scale=sigmas), STEP * 1.5)
    scores = distribution_scores(true)
    assert scores["coverage_90"] == pytest.approx(0.90, abs=0.01)
    assert scores["calibration_error"] < 0.01
    # a forecaster twice too sure is caught by both
    narrow = distribution_scores(distribution_frame(close, norm(loc=0.0, scale=sigmas / 2), STEP * 1.5))
    assert narrow["coverage_90"] < 0.65 and narrow["calibration_error"] > 0.05
    assert narrow["log_score"] < scores["log_score"] and narrow["qlike"] > scores["qlike"]


def test_the_pit_of_a_binned_forecast_spreads_each_bin_across_its_width():
    probs = np.zeros((3, 100))
    probs[:, 50] = 1.0  # all mass in "no change", read as uniform on [-step/2, step/2]
    pit = probability_integral_transform(probs, np.full(3, STEP), np.array([-STEP, 0.25 * STEP, STEP]))
    np.testing.assert_allclose(pit, [0.0, 0.75, 1.0])


@pytest.fixture(scope="module")
def garch_split():
    bars, sigmas = garch_bars(3000, seed=2)
    return split_bars(bars, context=16), sigmas


def test_garch_is_fitted_on_the_training_returns_only_and_filtered_forward(garch_split):
    split, _ = garch_split
    returns = np.diff(np.log(split.bars["close"].to_numpy()))
    scale = 1 / returns[:split.val_start - 1].std()
    # a model that never saw a bar after training
    params = arch_model(returns[:split.val_start - 1] * scale, mean="Constant", vol="GARCH", p=1, q=1,
                        dist="t").fit(disp="off").params
    mu, omega, alpha, beta = params["mu"], params["omega"], params["alpha[1]"], params["beta[1]"]
    shocks = returns * scale - mu
    variance = np.empty(len(shocks) + 1)
    weights = 0.94 ** np.arange(75)  # arch's backcast: exponentially weighted first 75 squared residuals
    variance[0] = (weights / weights.sum()) @ shocks[:75] ** 2
    for i, shock in enumerate(shocks):
        variance[i + 1] = omega + alpha * shock**2 + beta * variance[i]
    # the forecast at bar t is the variance of returns[t], which reads returns up to returns[t - 1]
    expected = np.sqrt(variance[split.test_start:len(split.bars)]) / scale
    np.testing.assert_allclose(garch(split)["sigma"].to_numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("name", list(BASELINES))
def test_a_baseline_never_reads_the_bars_after_the_one_it_forecasts(garch_split, name):
    split, _ = garch_split
    before = BASELINES[name](split)
    t = split.test_start + 100
    bars = split.bars.copy()
    bars.iloc[t + 1:, :4] *= np.exp(np.random.default_rng(4).normal(0, 0.01, (len(bars) - t - 1, 1)))
    after = BASELINES[name](type(split)(bars, split.val_start, split.test_start))
    assert list(before.columns[:len(FORECAST_COLUMNS)]) == FORECAST_COLUMNS
    pd.testing.assert_frame_equal(before.loc[:bars.index[t]], after.loc[:bars.index[t]])
    assert np.allclose(before[BIN_COLUMNS].sum(1), 1.0)


def test_the_point_baselines_carry_a_gaussian_of_their_training_residuals(garch_split):
    split, _ = garch_split
    train = np.diff(np.log(split.train["close"].to_numpy()))
    np.testing.assert_allclose(BASELINES["naive"](split)["sigma"], np.sqrt(np.mean(train**2)))
    np.testing.assert_allclose(BASELINES["drift"](split)["sigma"], train.std())
    ar = BASELINES["ar"](split)
    assert ar["sigma"].nunique() == 1 and ar["sigma"].iloc[0] < train.std()  # residuals of a least-squares fit
    climatology = BASELINES["climatology"](split)
    assert climatology["sigma"].iloc[0] == pytest.approx(train.std(), rel=0.05)  # kernel-smoothed, on the grid


def test_garch_beats_climatology_and_a_constant_sigma_on_a_clustered_series(garch_split):
    split, sigmas = garch_split
    forecasts = {name: BASELINES[name](split) for name in ("garch", "climatology", "naive")}
    rows = [{"method": m, "key": m} for m in forecasts]
    equities = {m: pd.Series(1e5, index=split.test.index) for m in forecasts}
    significance(rows, forecasts, equities, reps=50)
    row = {r["method"]: r for r in rows}
    assert row["garch"]["distribution_verdict"] == "the reference of the distribution tests"
    for rival in ("climatology", "naive"):
        assert row[rival]["ls_dm_stat"] > 0 and row[rival]["ls_dm_pvalue"] < 0.01, rival
        assert row[rival]["distribution_verdict"].startswith("log score worse than garch's")
    losses = distribution_losses(forecasts["garch"])
    assert losses["crps"].notna().all() and len(losses) == len(split.test) - 1


def test_a_run_without_garch_has_no_distribution_tests():
    index = pd.date_range("2022-01-03", periods=300, freq="h")
    close = pd.Series(1.1 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-3, 300))), index=index)
    forecasts = {"naive": pd.DataFrame({"close": close, "forecast": close, "p_up": 0.5}),
                 "other": pd.DataFrame({"close": close, "forecast": close * 1.0001, "p_up": 0.5})}
    rows = [{"method": m, "key": m} for m in forecasts]
    significance(rows, forecasts, {m: pd.Series(1e5, index=index) for m in forecasts}, reps=50)
    assert "ls_holm" not in rows[1] and "distribution_verdict" not in rows[1]
    assert np.isnan(distribution_scores(forecasts["other"])["log_score"])


def test_quantiles_and_sigma_agree_with_the_bins():
    frame = distribution_frame(pd.Series([1.2]), norm(loc=2e-4, scale=8e-4), STEP)
    row = frame.iloc[0]
    assert row["sigma"] == pytest.approx(8e-4)
    for name, level in QUANTILES.items():
        assert np.log(row[name] / 1.2) == pytest.approx(norm.ppf(level, 2e-4, 8e-4))
    returns = bin_values(100, np.array([STEP]))[0]
    assert frame[BIN_COLUMNS].to_numpy()[0] @ returns == pytest.approx(2e-4, rel=1e-3)


@pytest.fixture(scope="module")
def sv_split():
    """Bars whose volatility the range shows better than the close: a log-AR(1) volatility, each bar a path."""
    bars, true_sigma = stochastic_volatility_bars(4000, seed=0, persistence=0.95)
    return split_bars(bars, context=16), true_sigma


def test_har_range_is_a_least_squares_har_of_log_garman_klass_variance_on_the_training_bars(sv_split):
    split, _ = sv_split
    bars = split.bars
    gap = np.log(bars["open"] / bars["close"].shift()).fillna(0.0)
    variance = gap**2 + 0.5 * np.log(bars["high"] / bars["low"]) ** 2 \
        - (2 * np.log(2) - 1) * np.log(bars["close"] / bars["open"]) ** 2
    log_variance = np.log(variance.clip(lower=0.01 * variance.iloc[:split.val_start].mean()))
    assert har_windows(bars.index, longest=10_000) == (1, 24, 120)  # hourly bars round the clock: a day is 24
    means = sm.add_constant(pd.concat({w: log_variance.rolling(w).mean() for w in (1, 24, 120)}, axis=1))
    train = means.iloc[:split.val_start - 1].assign(target=log_variance.shift(-1)).dropna()
    fit = sm.OLS(train["target"], train.drop(columns="target")).fit()
    har = np.exp(0.5 * fit.predict(means))
    returns = np.log(bars["close"].shift(-1) / bars["close"])
    nu, _, scale = t.fit((returns / har).loc[train.index], floc=0)
    expected = har.iloc[split.test_start:] * scale * np.sqrt(nu / (nu - 2))
    np.testing.assert_allclose(har_range(split)["sigma"], expected, rtol=1e-6)


def test_har_range_keeps_its_training_parameters_over_the_validation_and_test_bars(sv_split):
    split, _ = sv_split
    bars = split.bars.copy()
    later = slice(split.val_start, split.test_start)  # wilder validation bars: a refit would move every forecast
    bars.iloc[later, bars.columns.get_loc("high")] *= 1.01
    bars.iloc[later, bars.columns.get_loc("low")] /= 1.01
    before, after = har_range(split), har_range(type(split)(bars, split.val_start, split.test_start))
    week = 120  # the longest HAR mean: test bars this far on read no validation bar
    assert not np.allclose(before["sigma"].iloc[:week], after["sigma"].iloc[:week])
    pd.testing.assert_frame_equal(before.iloc[week:], after.iloc[week:])


def test_a_later_bars_high_low_or_close_never_changes_an_earlier_har_range_forecast(sv_split):
    split, _ = sv_split
    before = har_range(split)
    t_ = split.test_start + 200
    bars = split.bars.copy()
    rng = np.random.default_rng(5)
    for column, sign in (("high", 1), ("low", -1), ("close", 0)):
        noise = rng.normal(0, 0.003, len(bars) - t_ - 1)
        bars.iloc[t_ + 1:, bars.columns.get_loc(column)] *= np.exp(sign * np.abs(noise) if sign else noise)
    after = har_range(type(split)(bars, split.val_start, split.test_start))
    pd.testing.assert_frame_equal(before.loc[:bars.index[t_]], after.loc[:bars.index[t_]])
    assert not np.allclose(before["sigma"].iloc[-50:], after["sigma"].iloc[-50:])  # the later ones do move


def test_har_ranges_sigma_follows_the_true_volatility_better_than_close_only_garch(sv_split):
    """A planted truth: over 20 seeds of this series the margin was 0.05 to 0.16 (mean 0.09)."""
    split, true_sigma = sv_split
    rho = {name: spearmanr(frame["sigma"], true_sigma.loc[frame.index]).statistic
           for name, frame in (("garch", garch(split)), ("har-range", har_range(split)))}
    assert rho["har-range"] > rho["garch"] + 0.02, rho


def test_bars_without_a_range_leave_har_range_out_with_one_reason(garch_split):
    split, _ = garch_split
    flat = split.bars.assign(open=split.bars["close"], high=split.bars["close"], low=split.bars["close"])
    with pytest.raises(BaselineSkipped, match=r"^har-range left out: the bars have no high-low range"):
        har_range(type(split)(flat, split.val_start, split.test_start))


def test_every_row_is_tested_against_garch_and_har_range_each_holm_adjusted_across_the_rows(sv_split):
    split, _ = sv_split
    forecasts = {name: BASELINES[name](split) for name in ("garch", "har-range", "climatology", "naive")}
    rows = [{"method": m, "key": m} for m in forecasts]
    significance(rows, forecasts, {m: pd.Series(1e5, index=split.test.index) for m in forecasts}, reps=50)
    row = {r["method"]: r for r in rows}
    tested = ["garch", "climatology", "naive"]  # against har-range
    np.testing.assert_allclose([row[m]["ls_holm_range"] for m in tested],
                               holm([row[m]["ls_dm_pvalue_range"] for m in tested]))
    for reference, role, other in (("har-range", "the reference that reads the bars' ranges", "garch"),
                                   ("garch", "the reference of the distribution tests", "har-range")):
        verdict = row[reference]["distribution_verdict"]
        assert verdict.startswith(f"{role}; log score ") and f"{other}'s (Holm p" in verdict, verdict
    for rival in ("climatology", "naive"):
        verdict = row[rival]["distribution_verdict"]
        assert "garch's" in verdict and "log score worse than har-range's" in verdict, verdict
        assert row[rival]["ls_dm_stat_range"] > 0 and row[rival]["ls_holm_range"] < 0.05
