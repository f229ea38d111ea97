"""Many instruments in one backtrader account: one ``Cerebro``, every instrument's signal feed on a common clock.

    legs = {"EURUSD": Leg(eurusd_frame, Costs()), "GBPUSD": Leg(gbpusd_frame, Costs(spread_pips=1.1))}
    result = run_portfolio(legs, ThresholdStrategy, {"threshold_bps": 1.0}, weighting="inverse_sigma")
    result.equity        # the account's value at each bar's close
    result.legs          # each instrument's cumulative P&L (cash), one column per instrument
    result.notes         # instruments left out, and why

Each instrument's position is the strategy's ``decide`` on that instrument's own ``Signal``, scaled by its share of
the risk budget: ``equal`` (1/k of the account each) or ``inverse_sigma`` (in proportion to 1/sigma of each
instrument's latest forecast, so a quiet pair holds more notional than a jumpy one). Backtrader delivers the feeds
by timestamp (its datetime synchronisation), so a decision at time t sees every instrument's bars up to t only; an
instrument acts on the bars it has, and one that has no bar at t keeps its position.

Costs are per instrument: each feed gets its own commission scheme (``broker.addcommissioninfo(..., name=feed)``)
with its lot size, commission, margin and swap. Its spread and slippage are charged as cash at each fill, half the
spread and the slippage per side, the same amount ``run_backtest`` takes through the fill price: backtrader's
slippage is one setting per broker, in price units, and a JPY pip is a hundred EURUSD pips.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import backtrader as bt
import pandas as pd

from llmsignal.backtests.costs import Costs, LotCommission
from llmsignal.strategies import LLMSignalStrategy, Signal, SignalFeed, StrategyError

WEIGHTINGS = ("equal", "inverse_sigma")


@dataclass(frozen=True)
class Leg:
    """One instrument of a portfolio: its signal frame (``signal_frame``), its contract's costs, its quote currency."""

    frame: pd.DataFrame
    costs: Costs = field(default_factory=Costs)
    quote: str = "USD"


@dataclass
class PortfolioResult:
    equity: pd.Series  # account value at each bar's close, on the union of the instruments' timestamps
    legs: pd.DataFrame  # each instrument's cumulative P&L in cash (fills, marks, commission, spread, swap)
    positions: pd.DataFrame  # each instrument's position in units at each bar's close
    notes: list[str]  # one line per instrument left out of the portfolio

    @property
    def returns(self) -> pd.Series:
        return self.equity.pct_change().fillna(0.0)


class SpreadCommission(LotCommission):
    """``LotCommission`` plus half the spread and the slippage, in price units, on every unit filled."""

    params = (("half_spread", 0.0),)

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return super()._getcommission(size, price, pseudoexec) + abs(size) * self.p.half_spread


def commission_for(costs: Costs) -> SpreadCommission:
    """The commission scheme of one instrument of a portfolio, its spread and slippage included."""
    return SpreadCommission(per_lot=costs.commission_per_lot, lot=costs.lot_size, leverage=costs.max_leverage,
                            pip=costs.pip, swap_long=costs.swap_long_pips, swap_short=costs.swap_short_pips,
                            rollover_hour=costs.rollover_hour_utc,
                            half_spread=(costs.spread_pips / 2 + costs.slippage_pips) * costs.pip)


def bar_spacing(frame: pd.DataFrame) -> pd.Timedelta:
    """The typical time between bars: the median gap, so weekends and holidays do not count."""
    return pd.Series(frame.index).diff().median()


def portfolio_members(legs: dict[str, Leg]) -> tuple[list[str], list[str]]:
    """The instruments that can share one account, and a note for each one left out.

    The portfolio trades on the bar spacing most instruments share (the first instrument's on a tie) and in the
    first such instrument's quote currency, which is taken as the account's: one account cannot add P&L in yen to
    P&L in dollars without a conversion rate, and a common clock needs a common bar.
    """
    spacings = {name: bar_spacing(leg.frame) for name, leg in legs.items()}
    counts = Counter(spacings.values())
    spacing = max(counts, key=lambda s: (counts[s], -list(spacings.values()).index(s)))
    members, notes = [], []
    for name, leg in legs.items():
        if spacings[name] != spacing:
            notes.append(f"{name}: bars every {spacings[name]}, the portfolio's every {spacing}; left out of the "
                         "portfolio (its own results stand)")
        elif members and leg.quote != legs[members[0]].quote:
            notes.append(f"{name}: quoted in {leg.quote}, the portfolio's account in {legs[members[0]].quote}; left "
                         "out of the portfolio (its own results stand)")
        else:
            members.append(name)
    return members, notes


class Book(bt.Analyzer):
    """At each bar of the common clock: the account's value, and each feed's cumulative P&L and position.

    A feed's P&L comes from its own fills and closes, apart from the broker's account value: the cash of every
    fill (price, commission, spread), the position marked at the close, the swap charged to it.
    """

    def start(self) -> None:
        self.flows = {data._name: 0.0 for data in self.datas}
        self.equity: dict[pd.Timestamp, float] = {}
        self.pnl: dict[pd.Timestamp, dict[str, float]] = {}
        self.units: dict[pd.Timestamp, dict[str, float]] = {}

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            self.flows[order.data._name] -= order.executed.size * order.executed.price + order.executed.comm

    def next(self) -> None:
        moment = pd.Timestamp(self.strategy.datetime.datetime(0))
        credit = self.strategy.broker.d_credit
        self.equity[moment] = self.strategy.broker.getvalue()
        self.pnl[moment], self.units[moment] = {}, {}
        for data in self.datas:
            if len(data):
                size = self.strategy.getposition(data).size
                self.pnl[moment][data._name] = self.flows[data._name] + size * data.close[0] - credit.get(data, 0.0)
                self.units[moment][data._name] = size

    def get_analysis(self) -> dict:
        return {"equity": self.equity, "pnl": self.pnl, "units": self.units}


def _portfolio_class(strategy: type[LLMSignalStrategy]) -> type[LLMSignalStrategy]:
    """``strategy`` trading every feed: ``decide`` per instrument on the bars that arrive, sized by its share."""

    class Portfolio(strategy):  # type: ignore[valid-type,misc]
        params = (("weighting", "equal"), ("sizing", None))  # sizing: feed name -> (lot_step, min_size) in units

        def prenext(self) -> None:  # some instruments have not started yet: trade those that have
            self.next()

        def next(self) -> None:
            now = self.datetime[0]
            live = [data for data in self.datas if len(data)]
            shares = self._shares(live)
            for data in live:
                if data.datetime[0] == now:  # a bar of its own at this time, not one carried from before
                    exposure = self._checked_exposure(self._signal_of(data))
                    self._order_share(data, exposure * shares[data._name])

        def _signal_of(self, data: bt.AbstractDataBase) -> Signal:
            forecast, p_up = data.forecast[0], data.p_up[0]
            return Signal(data.datetime.datetime(0), data.close[0], forecast, p_up, {data._name: (forecast, p_up)},
                          data.sigma[0])

        def _shares(self, live: list) -> dict[str, float]:
            """Each instrument's share of the account, from what is known now (each one's latest sigma)."""
            if self.p.weighting == "equal":
                return {data._name: 1 / len(self.datas) for data in live}
            inverse = {data._name: 1 / data.sigma[0] for data in live}
            total = sum(inverse.values())
            return {name: value / total for name, value in inverse.items()}

        def _order_share(self, data: bt.AbstractDataBase, exposure: float) -> None:
            lot_step, min_size = self.p.sizing[data._name]
            notional = exposure * self.p.leverage * self.broker.getvalue()
            units = math.trunc(notional / data.close[0] / lot_step) * lot_step
            if abs(units) < min_size:
                units = 0.0
            if units != self.getposition(data).size:
                self.order_target_size(data=data, target=units)

    Portfolio.__name__ = f"{strategy.__name__}Portfolio"
    return Portfolio


def _check(legs: dict[str, Leg], strategy: type, params: dict, weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")
    if not (isinstance(strategy, type) and issubclass(strategy, LLMSignalStrategy)):
        raise StrategyError(f"{getattr(strategy, '__name__', strategy)}: a portfolio trades LLMSignalStrategy "
                            "subclasses (decide per instrument)")
    if params.get("stop_atr", 0) or params.get("take_atr", 0):
        raise StrategyError(f"{strategy.__name__}: stop_atr and take_atr exits are per instrument only; a portfolio "
                            "runs without them")
    for name, leg in legs.items():
        if weighting == "inverse_sigma" and not (leg.frame["sigma"] > 0).all():
            raise ValueError(f"{name}: inverse_sigma weighting needs a positive forecast sigma on every bar")


def run_portfolio(legs: dict[str, Leg], strategy: type[LLMSignalStrategy], params: dict | None = None,
                  weighting: str = "equal", cash: float | None = None) -> PortfolioResult:
    """Backtest ``strategy`` on every instrument of ``legs`` at once, in one account of ``cash`` (the first
    instrument's ``Costs.cash`` by default); instruments on another bar spacing or quote currency are left out
    with a note (``portfolio_members``)."""
    params = dict(params or {})
    _check(legs, strategy, params, weighting)
    members, notes = portfolio_members(legs)
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    for name in members:
        cerebro.adddata(SignalFeed(dataname=legs[name].frame), name=name)
        cerebro.broker.addcommissioninfo(commission_for(legs[name].costs), name=name)
    cerebro.broker.setcash(legs[members[0]].costs.cash if cash is None else cash)
    cerebro.broker.set_int2pnl(False)  # swap stays out of the orders' commission: Book takes it from d_credit
    sizing = {name: (legs[name].costs.sizing()["lot_step"], legs[name].costs.sizing()["min_size"]) for name in members}
    cerebro.addstrategy(_portfolio_class(strategy), weighting=weighting, sizing=sizing, **params)
    cerebro.addanalyzer(Book, _name="book")
    book = cerebro.run()[0].analyzers.book.get_analysis()
    per_leg = lambda table: pd.DataFrame.from_dict(table, orient="index")[members].fillna(0.0)  # noqa: E731
    return PortfolioResult(pd.Series(book["equity"], name="equity", dtype=float), per_leg(book["pnl"]),
                           per_leg(book["units"]), notes)
