"""FX execution costs for backtrader: spread, commission per lot, slippage, margin, lot sizes and swap.

    costs = Costs(swap_long_pips=-0.9)
    costs.apply(cerebro)          # broker cash, commission, slippage, swap
    cerebro.addstrategy(ThresholdStrategy, **costs.sizing())  # lot step and minimum lot
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import datetime, time, timedelta, timezone

import backtrader as bt

WEDNESDAY = 2
NON_NEGATIVE = ("spread_pips", "commission_per_lot", "slippage_pips", "min_lot")
POSITIVE = ("pip", "lot_size", "max_leverage", "cash", "lot_step")


class CostError(ValueError):
    """A cost setting that is unknown or out of range."""


@dataclass(frozen=True)
class Costs:
    """Defaults are those of a retail ECN EURUSD account.

    ``spread_pips`` is paid in full on every round trip (half on each fill, as
    fills happen at bid or ask around the bar's mid price); ``commission_per_lot``
    is charged per side per 100,000 units; ``max_leverage`` sets the margin
    (ESMA's retail limit for major pairs is 30:1). Orders are sized in steps of
    ``lot_step`` lots and at least ``min_lot`` lots. ``swap_long_pips`` and
    ``swap_short_pips`` are the overnight financing, in pips of the position's size per
    night (negative = paid, positive = earned; long EURUSD pays as USD rates
    are above EUR rates), charged for every ``rollover_hour_utc`` rollover a
    position is held across, three nights on Wednesdays (see ``rollover_nights``).
    Amounts are in the quote currency, which is taken to be the account's.
    """

    spread_pips: float = 0.8
    commission_per_lot: float = 3.5
    slippage_pips: float = 0.2
    pip: float = 0.0001
    lot_size: float = 100_000.0
    max_leverage: float = 30.0
    cash: float = 100_000.0
    min_lot: float = 0.01
    lot_step: float = 0.01
    swap_long_pips: float = -0.6
    swap_short_pips: float = 0.1
    rollover_hour_utc: int = 22

    def with_settings(self, settings: dict[str, str]) -> Costs:
        """These costs with ``settings`` (name to text, as ``--cost spread_pips=1.2`` gives them) changed.

        >>> Costs().with_settings({"spread_pips": "1.2"}).spread_pips
        1.2
        """
        known = {f.name: f for f in fields(self)}
        changed = {}
        for name, text in settings.items():
            if name not in known:
                raise CostError(f"unknown cost {name!r}; costs: {', '.join(known)}")
            kind = int if name == "rollover_hour_utc" else float
            try:
                value = kind(text)
            except ValueError:
                raise CostError(f"cost {name}={text!r} is not a{'n integer' if kind is int else ' number'}") from None
            if not math.isfinite(value) or (name in POSITIVE and value <= 0) or (name in NON_NEGATIVE and value < 0) \
                    or (name == "rollover_hour_utc" and not 0 <= value <= 23):
                raise CostError(f"cost {name}={text!r} is out of range")
            changed[name] = value
        return replace(self, **changed)

    def describe(self) -> dict[str, str]:
        """The cost settings in plain words, one entry per line of a report."""
        step, least = self.lot_step * self.lot_size, self.min_lot * self.lot_size
        per_lot = self.pip * self.lot_size  # cash per pip on one lot
        return {
            "starting cash": f"{self.cash:,.0f}",
            "fills": "market orders fill at the next bar's open",
            "spread": f"{self.spread_pips:g} pips per round trip, half paid on each fill",
            "slippage": f"{self.slippage_pips:g} pips against every fill",
            "commission": f"{self.commission_per_lot:g} per {self.lot_size:,.0f} units, per side",
            "lots": f"sizes in steps of {self.lot_step:g} lots ({step:,.0f} units), at least {self.min_lot:g} lots "
                    f"({least:,.0f} units)",
            "leverage": f"at most {self.max_leverage:g}:1 (margin {100 / self.max_leverage:.2f}% of notional)",
            "swap": f"long {self.swap_long_pips:+g} pips, short {self.swap_short_pips:+g} pips of the position's size "
                    f"({self.swap_long_pips * per_lot:+.2f} / {self.swap_short_pips * per_lot:+.2f} per lot) for each "
                    f"{self.rollover_hour_utc:02d}:00 UTC rollover it is held across, three on Wednesdays, "
                    f"none at weekends (negative = paid)",
        }

    def sizing(self) -> dict[str, float]:
        """``LLMSignalStrategy`` params (units) for this account's lot step and minimum lot."""
        return {"lot_step": round(self.lot_step * self.lot_size, 9), "min_size": round(self.min_lot * self.lot_size, 9)}

    def apply(self, cerebro: bt.Cerebro) -> None:
        """Set cash, commission with swap, and slippage on ``cerebro``'s broker (sizing goes to the strategy)."""
        cerebro.broker.setcash(self.cash)
        cerebro.broker.addcommissioninfo(LotCommission(
            per_lot=self.commission_per_lot, lot=self.lot_size, leverage=self.max_leverage, pip=self.pip,
            swap_long=self.swap_long_pips, swap_short=self.swap_short_pips, rollover_hour=self.rollover_hour_utc))
        # Keep swap out of the orders' commission (backtrader's default books it there when a trade closes):
        # it is reported on its own, from broker.d_credit.
        cerebro.broker.set_int2pnl(False)
        half_spread = (self.spread_pips / 2 + self.slippage_pips) * self.pip
        cerebro.broker.set_slippage_fixed(half_spread, slip_open=True, slip_limit=True, slip_match=True,
                                          slip_out=True)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def rollover_nights(start: datetime, end: datetime, hour: int = 22) -> int:
    """Nights of swap for a position held from ``start`` to ``end``: rollovers at ``hour`` UTC in (start, end].

    One rollover per weekday, none on Saturday or Sunday (the market is shut),
    and Wednesday's counts three: spot settles two days later, so Wednesday's
    rollover carries the position over the weekend. Naive times are UTC.

    >>> rollover_nights(datetime(2024, 1, 3, 21), datetime(2024, 1, 3, 22))  # a Wednesday
    3
    >>> rollover_nights(datetime(2024, 1, 5, 12), datetime(2024, 1, 8, 12))  # Friday noon to Monday noon
    1
    """
    start, end = _utc(start), _utc(end)
    nights, day = 0, start.date()
    while day <= end.date():
        if day.weekday() < 5 and start < datetime.combine(day, time(hour)) <= end:
            nights += 3 if day.weekday() == WEDNESDAY else 1
        day += timedelta(days=1)
    return nights


class LotCommission(bt.CommInfoBase):
    """Commission per lot traded, per side; margin of notional / leverage; swap at each rollover.

    Backtrader's broker asks ``get_credit_interest`` on every bar for every open
    position and takes the answer from cash, so the swap applies whatever the
    strategy; ``broker.d_credit[data]`` totals it per feed (positive = paid).
    """

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED), ("per_lot", 3.5),
              ("lot", 100_000.0), ("leverage", 30.0), ("pip", 0.0001), ("swap_long", -0.6), ("swap_short", 0.1),
              ("rollover_hour", 22))

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) / self.p.lot * self.p.per_lot

    def get_credit_interest(self, data: bt.AbstractDataBase, pos: bt.Position, dt: datetime) -> float:
        """The swap due for ``pos``, held since ``pos.datetime`` (its last fill or last charge), up to ``dt``."""
        if pos.datetime is None:
            return 0.0
        pips = self.p.swap_long if pos.size > 0 else self.p.swap_short
        return -rollover_nights(pos.datetime, dt, self.p.rollover_hour) * pips * self.p.pip * abs(pos.size)


def swap_cash(broker: bt.BrokerBase) -> float:
    """The swap ``broker`` has booked so far, as cash over every feed (negative = paid).

        cerebro.run()
        print(swap_cash(cerebro.broker))
    """
    return 0.0 - sum(getattr(broker, "d_credit", {}).values())  # 0.0 - : no -0.0 when nothing was held
