"""FX execution costs for backtrader: spread, commission per lot, slippage, margin."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import backtrader as bt


@dataclass(frozen=True)
class Costs:
    """Defaults are those of a retail ECN EURUSD account.

    ``spread_pips`` is paid in full on every round trip (half on each fill, as
    fills happen at bid or ask around the bar's mid price); ``commission_per_lot``
    is charged per side per 100,000 units; ``max_leverage`` sets the margin
    (ESMA's retail limit for major pairs is 30:1).
    """

    spread_pips: float = 0.8
    commission_per_lot: float = 3.5
    slippage_pips: float = 0.2
    pip: float = 0.0001
    lot_size: float = 100_000.0
    max_leverage: float = 30.0
    cash: float = 100_000.0

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, cerebro: bt.Cerebro) -> None:
        cerebro.broker.setcash(self.cash)
        cerebro.broker.addcommissioninfo(LotCommission(per_lot=self.commission_per_lot, lot=self.lot_size,
                                                       leverage=self.max_leverage))
        half_spread = (self.spread_pips / 2 + self.slippage_pips) * self.pip
        cerebro.broker.set_slippage_fixed(half_spread, slip_open=True, slip_limit=True, slip_match=True,
                                          slip_out=True)


class LotCommission(bt.CommInfoBase):
    """Commission per lot traded, per side; margin of notional / leverage."""

    params = (("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED), ("per_lot", 3.5),
              ("lot", 100_000.0), ("leverage", 30.0))

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        return abs(size) / self.p.lot * self.p.per_lot
