import sys
from pathlib import Path

import pandas as pd
import pytest

from llmsignal.backtests.engine import run_backtest
from llmsignal.strategies import (
    EnsembleStrategy,
    LLMSignalStrategy,
    ProbabilityStrategy,
    StrategyError,
    ThresholdStrategy,
    signal_frame,
)
from llmsignal.strategies.loader import load_strategy, parse_param_pairs, shipped_strategies, strategy_params
from tests.conftest import synthetic_bars

ROOT = Path(__file__).resolve().parents[1]

USER_FILE = '''
from llmsignal.strategies import LLMSignalStrategy


class Contrarian(LLMSignalStrategy):
    """Fades the model: short when it says up, long when it says down."""

    params = (("size", 0.5), ("fade", True))

    def decide(self, signal):
        side = 1.0 if signal.forecast > signal.close else -1.0 if signal.forecast < signal.close else 0.0
        return -side * self.p.size if self.p.fade else side * self.p.size


class NotAStrategy:
    pass
'''


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "outside" / "my_strategy.py"
    path.parent.mkdir()
    path.write_text(USER_FILE)
    return path


@pytest.fixture()
def frame():
    bars = synthetic_bars(300)
    bars.columns = [c.lower() for c in bars.columns]
    rng = pd.Series(range(len(bars)), index=bars.index)
    forecast = bars["close"] * (1 + 1e-3 * ((rng % 7) - 3) / 3)  # a mix of up, down and flat forecasts
    return signal_frame(bars, pd.DataFrame({"forecast": forecast, "p_up": 0.5}, index=bars.index))


def test_a_strategy_from_a_file_outside_the_package_runs_and_trades_differently(user_file, frame):
    cls = load_strategy(f"{user_file}:Contrarian")
    assert issubclass(cls, LLMSignalStrategy) and cls.__name__ == "Contrarian"
    mine = run_backtest(frame, cls, strategy_params(cls, {"size": "0.8"}))
    shipped = run_backtest(frame, ThresholdStrategy)
    assert mine.trades > 10 and shipped.trades > 10
    assert not mine.equity.equals(shipped.equity)
    # fading the model loses what following it wins, less costs: the equity moves go the other way
    assert mine.equity.diff().corr(shipped.equity.diff()) < -0.5


def test_the_three_forms_of_spec(user_file, tmp_path, monkeypatch):
    assert load_strategy("ThresholdStrategy") is ThresholdStrategy
    assert load_strategy("llmsignal.strategies.probability:ProbabilityStrategy") is ProbabilityStrategy
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "fade.py").write_text(USER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_strategy("userpkg.fade:Contrarian").__name__ == "Contrarian"
    monkeypatch.chdir(user_file.parent)
    assert load_strategy("my_strategy.py:Contrarian").__name__ == "Contrarian"  # a relative path
    assert set(shipped_strategies()) == {"EnsembleStrategy", "ProbabilityStrategy", "SideStrategy", "ThresholdStrategy",
                                         "VolatilityTargetStrategy"}


@pytest.mark.parametrize(("spec", "message"), [
    ("Threshold", r"unknown strategy 'Threshold'; shipped strategies: EnsembleStrategy, ProbabilityStrategy, "
                  r"SideStrategy, ThresholdStrategy, VolatilityTargetStrategy"),
    ("{dir}/missing.py:Contrarian", r"strategy file .*missing.py does not exist"),
    ("{file}:Momentum", r"defines no Momentum; strategies there: Contrarian"),
    ("{file}:NotAStrategy", r"NotAStrategy is not a subclass of llmsignal.strategies.LLMSignalStrategy"),
    ("llmsignal.strategies.base:LLMSignalStrategy", r"LLMSignalStrategy is the base class"),
    ("llmsignal.strategies.nowhere:Thing", r"cannot import module 'llmsignal.strategies.nowhere': ModuleNotFoundError"),
    ("{dir}/broken.py:Contrarian", r"broken.py failed to load: SyntaxError"),
    (":Contrarian", r"is not a shipped name, package.module:Class or path/to/file.py:Class"),
])
def test_load_errors_are_one_clear_line(spec, message, user_file):
    (user_file.parent / "broken.py").write_text("def oops(:\n")
    with pytest.raises(StrategyError, match=message) as error:
        load_strategy(spec.format(dir=user_file.parent, file=user_file))
    assert "\n" not in str(error.value)


def test_strategy_params_convert_to_the_default_types(user_file):
    cls = load_strategy(f"{user_file}:Contrarian")
    params = strategy_params(cls, {"size": "0.25", "fade": "false", "atr_period": "20", "stop_atr": "2"})
    assert params == {"size": 0.25, "fade": False, "atr_period": 20, "stop_atr": 2.0}
    assert type(params["atr_period"]) is int and type(params["stop_atr"]) is float
    assert strategy_params(cls, {"fade": "1"}) == {"fade": True}
    assert strategy_params(EnsembleStrategy, {"mode": "average"}) == {"mode": "average"}
    assert strategy_params(ThresholdStrategy, {"threshold_bps": 2.0}) == {"threshold_bps": 2.0}  # typed passes
    assert strategy_params(ThresholdStrategy, parse_param_pairs(["threshold_bps = 1.5"])) == {"threshold_bps": 1.5}


@pytest.mark.parametrize(("pairs", "message"), [
    ({"treshold_bps": "1"}, r"ThresholdStrategy takes no parameter treshold_bps; it takes: atr_period, leverage, "
                            r"lot_step, min_size, stop_atr, take_atr, threshold_bps"),
    ({"threshold_bps": "high"}, r"ThresholdStrategy parameter threshold_bps='high': expected float"),
    ({"atr_period": "14.5"}, r"parameter atr_period='14.5': expected int"),
])
def test_strategy_params_errors(pairs, message):
    with pytest.raises(StrategyError, match=message):
        strategy_params(ThresholdStrategy, pairs)


def test_bool_params_take_true_false_1_0(user_file):
    cls = load_strategy(f"{user_file}:Contrarian")
    with pytest.raises(StrategyError, match=r"fade='maybe': expected true/false/1/0"):
        strategy_params(cls, {"fade": "maybe"})


def test_param_pairs_need_an_equals_sign():
    with pytest.raises(StrategyError, match=r"strategy parameter 'threshold_bps' is not name=value"):
        parse_param_pairs(["threshold_bps"])


@pytest.mark.parametrize("shadow", [False, True])
def test_a_file_written_for_the_old_import_name_gets_one_line_saying_what_to_write(tmp_path, monkeypatch, shadow):
    # as installed: the checkout's own folders are not on the path (pytest puts the repo root there)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    if shadow:  # the user's project has a `strategies` package of its own
        (tmp_path / "strategies").mkdir()
        (tmp_path / "strategies" / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path))
    old = tmp_path / "old.py"
    old.write_text("from strategies import LLMSignalStrategy\n\n\nclass Old(LLMSignalStrategy):\n"
                   "    def decide(self, signal):\n        return 1.0\n")
    with pytest.raises(StrategyError, match=r"imports 'strategies'.*write `from llmsignal.strategies import ...`"):
        load_strategy(f"{old}:Old")
