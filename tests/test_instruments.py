"""Instrument contracts (issue 32): the shipped FX majors, a user's file, and a JPY pip in the P&L."""

from dataclasses import replace

import backtrader as bt
import pandas as pd
import pytest

from llmsignal.backtests.engine import run_backtest
from llmsignal.instruments import InstrumentsError, contract_for, read_instruments, shipped_instruments

MAJORS = ("EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "XAUUSD")


def test_the_majors_ship_with_their_pip_quote_and_fx_day_end():
    contracts = shipped_instruments()
    assert set(MAJORS) <= set(contracts)
    assert contracts["USDJPY"].costs.pip == 0.01 and contracts["USDJPY"].quote == "JPY"
    assert contracts["EURUSD"].costs.pip == 0.0001 and contracts["EURUSD"].quote == "USD"
    assert contracts["XAUUSD"].costs.lot_size == 100
    assert {c.costs.rollover_hour_utc for c in contracts.values()} == {22}  # 17:00 New York at standard time


def test_an_unknown_symbol_gets_the_fx_default_and_a_note():
    contract, note = contract_for("GOOG")
    assert contract.costs.pip == 0.0001 and contract.quote == "USD"
    assert note.startswith("GOOG: not in the instruments files") and "FX default" in note
    assert contract_for("eur/usd") == (shipped_instruments()["EURUSD"], "")


def test_a_users_file_adds_symbols_and_replaces_shipped_ones(tmp_path):
    path = tmp_path / "instruments.yaml"
    path.write_text("USDJPY: {spread_pips: 1.5, pip: 0.01, quote: JPY}\n"
                    "GER40: {pip: 1, lot_size: 1, commission_per_lot: 0, day_end: '17:00 Europe/Berlin', quote: EUR}\n")
    assert contract_for("USDJPY", path)[0].costs.spread_pips == 1.5
    assert contract_for("USDJPY", path)[0].costs.commission_per_lot == 3.5  # a key left out: Costs' default
    contract, note = contract_for("GER40", path)
    assert (contract.costs.pip, contract.costs.rollover_hour_utc, contract.quote, note) == (1.0, 16, "EUR", "")
    path.write_text("GER40: {pip: 1, day_end: '17:30 Europe/Berlin'}\n")
    with pytest.raises(InstrumentsError, match="GER40: day_end '17:30 Europe/Berlin' is not a day end"):
        read_instruments(path)  # the broker books swap on whole hours


@pytest.mark.parametrize("text,message", [
    ("USDJPY: {spread_pips: -1}", "instruments.yaml: USDJPY: spread_pips must be 0 or more, got -1"),
    ("USDJPY: {pip: 0}", "instruments.yaml: USDJPY: pip must be above 0, got 0"),
    ("USDJPY: {spred_pips: 1}", "instruments.yaml: USDJPY: unknown key 'spred_pips'; a contract takes: pip, "),
    ("USDJPY: {swap_long_pips: yes}", "instruments.yaml: USDJPY: swap_long_pips must be a number, got True"),
    ("USDJPY: {day_end: '17:00 Mars/Olympus'}", "instruments.yaml: USDJPY: day_end '17:00 Mars/Olympus': unknown"),
    ("USDJPY: {quote: yen}", "instruments.yaml: USDJPY: quote must be a three-letter currency code"),
    ("USDJPY: 0.01", "instruments.yaml: USDJPY: expected a mapping of contract terms"),
    ("[USDJPY]", "instruments.yaml: expected a mapping of symbols to contracts"),
    ("USDJPY: {pip: [", "instruments.yaml: not valid YAML"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]", "instruments.yaml: refused: its aliases"),
])
def test_a_bad_file_is_one_line_naming_the_file_symbol_and_key(tmp_path, text, message):
    path = tmp_path / "instruments.yaml"
    path.write_text(text)
    with pytest.raises(InstrumentsError) as caught:
        contract_for("USDJPY", path)
    assert str(caught.value).startswith(f"{tmp_path}/{message}")
    assert "\n" not in str(caught.value)


class HoldOneLot(bt.Strategy):
    def next(self) -> None:
        if not self.position:
            self.buy(size=100_000)


def test_a_usdjpy_lot_over_50_pips_makes_what_a_hand_computation_says():
    """Long 1 lot (100,000 USD) of USDJPY from 150.00 to 150.50, 50 pips of 0.01 yen:
    50 x 0.01 x 100,000 = 50,000 yen, less the half spread and slippage on the fill, (0.9 / 2 + 0.2) pips x 1,000
    yen a pip = 650 yen, less one commission of 500 yen: 48,850 yen. (A EURUSD pip of 0.0001 would cost 6.5.)"""
    contract, _ = contract_for("USDJPY")
    costs = replace(contract.costs, cash=10_000_000.0)  # a yen account that can hold the lot
    bars = pd.DataFrame({"open": [150.00, 150.00], "high": [150.05, 150.60], "low": [149.95, 149.95],
                         "close": [150.00, 150.50], "volume": 1000, "forecast": 150.6, "p_up": 0.7, "sigma": 1e-3},
                        index=pd.to_datetime(["2024-01-10 10:00", "2024-01-10 11:00"]))
    result = run_backtest(bars, HoldOneLot, costs=costs)
    assert (costs.spread_pips, costs.slippage_pips, costs.commission_per_lot) == (0.9, 0.2, 500.0)
    assert result.equity.iloc[-1] - costs.cash == pytest.approx(48_850.0, abs=1e-6)
    assert result.commission == 500.0
