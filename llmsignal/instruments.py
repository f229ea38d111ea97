"""Each instrument's contract (``--instruments FILE``): pip, lot, spread, commission, swap, day end, quote currency.

    USDJPY: {pip: 0.01, spread_pips: 0.9, commission_per_lot: 500, swap_long_pips: 1.2, swap_short_pips: -2.2,
             day_end: "17:00 America/New_York", quote: JPY}
    GER40: {pip: 1, lot_size: 1, spread_pips: 1.2, commission_per_lot: 0, day_end: "22:00 Europe/Berlin", quote: EUR}

A file maps symbols to their contracts; a key left out takes ``Costs``' default (retail ECN EURUSD terms).
Amounts are in the instrument's quote currency. The shipped ``instruments.yaml`` holds the FX majors and gold; a
file's symbols are added to them and replace theirs. ``day_end`` is the trading day's end, where swap is charged;
the broker books it at that hour in UTC at standard time (22:00 for 17:00 New York), so in the months of daylight
saving a position opened or closed within the hour before the true rollover is charged one night less or more.
``day_end`` is a whole hour for the same reason.

    contract, note = contract_for("USDJPY")            # note: "" when the symbol is known
    run_backtest(frame, ThresholdStrategy, costs=contract.costs)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmsignal.backtests.costs import NON_NEGATIVE, POSITIVE, Costs
from llmsignal.config_file import parse_yaml, read_config_text

NUMBERS = ("pip", "lot_size", "spread_pips", "commission_per_lot", "slippage_pips", "swap_long_pips",
           "swap_short_pips", "max_leverage", "min_lot", "lot_step")
KEYS = (*NUMBERS, "day_end", "quote")
FX_DAY_END = "17:00 America/New_York"
STANDARD_TIME = datetime(2024, 1, 15)  # a winter day: the zone's standard offset
SYMBOL = re.compile(r"[A-Za-z0-9._-]{1,32}")


class InstrumentsError(ValueError):
    """An instruments file that cannot be read, or a symbol, key or value it may not hold."""


@dataclass(frozen=True)
class Contract:
    """What trading one instrument costs and in which currency; ``costs`` drives the broker."""

    symbol: str
    costs: Costs = field(default_factory=Costs)
    quote: str = "USD"
    day_end: str = FX_DAY_END


def rollover_hour_utc(day_end: str) -> int:
    """The UTC hour, at standard time, of a day end written ``"HH:00 Area/City"``.

    >>> rollover_hour_utc("17:00 America/New_York"), rollover_hour_utc("17:00 Asia/Tokyo")
    (22, 8)
    """
    match = re.fullmatch(r"(\d{1,2}):00 (\S+)", day_end.strip())
    if not match or int(match[1]) > 23:
        raise ValueError(f"{day_end!r} is not a day end like {FX_DAY_END!r} (a whole hour and a time zone)")
    try:
        zone = ZoneInfo(match[2])
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{day_end!r}: unknown time zone {match[2]!r}") from None
    local = STANDARD_TIME.replace(hour=int(match[1]), tzinfo=zone)
    return int((local.hour - local.utcoffset().total_seconds() / 3600) % 24)


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InstrumentsError(f"{where}: {key} must be a number, got {value!r}")
    if key in POSITIVE and value <= 0:
        raise InstrumentsError(f"{where}: {key} must be above 0, got {value!r}")
    if key in NON_NEGATIVE and value < 0:
        raise InstrumentsError(f"{where}: {key} must be 0 or more, got {value!r}")
    return float(value)


def _contract(path: Path | str, symbol: Any, terms: Any) -> Contract:
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise InstrumentsError(f"{path}: {symbol!r} is not a symbol (letters, digits, '.', '_' or '-')")
    where = f"{path}: {symbol}"
    if not isinstance(terms, dict):
        raise InstrumentsError(f"{where}: expected a mapping of contract terms, got {terms!r}")
    unknown = [str(key) for key in terms if key not in KEYS]
    if unknown:
        raise InstrumentsError(f"{where}: unknown key {unknown[0]!r}; a contract takes: {', '.join(KEYS)}")
    numbers = {key: _number(where, key, terms[key]) for key in NUMBERS if key in terms}
    day_end = str(terms.get("day_end", FX_DAY_END))
    try:
        hour = rollover_hour_utc(day_end)
    except ValueError as err:
        raise InstrumentsError(f"{where}: day_end {err}") from None
    quote = terms.get("quote", "USD")
    if not (isinstance(quote, str) and re.fullmatch(r"[A-Z]{3}", quote)):
        raise InstrumentsError(f"{where}: quote must be a three-letter currency code like USD, got {quote!r}")
    return Contract(symbol.upper(), replace(Costs(), rollover_hour_utc=hour, **numbers), quote, day_end)


def read_instruments(path: Path | str) -> dict[str, Contract]:
    """The contracts in the YAML file ``path``, by upper-case symbol; ``InstrumentsError`` (one line naming the
    file, the symbol and the key) for anything else."""
    raw = parse_yaml(read_config_text(Path(path), InstrumentsError), Path(path), InstrumentsError)
    if not isinstance(raw, dict):
        raise InstrumentsError(f"{path}: expected a mapping of symbols to contracts, like "
                               "EURUSD: {pip: 0.0001, spread_pips: 0.8}")
    contracts = [_contract(path, symbol, terms) for symbol, terms in raw.items()]
    return {contract.symbol: contract for contract in contracts}


def shipped_instruments() -> dict[str, Contract]:
    """The contracts llmsignal ships (``llmsignal/instruments.yaml``): the FX majors and gold."""
    with resources.as_file(resources.files("llmsignal") / "instruments.yaml") as path:
        return read_instruments(path)


def contract_for(symbol: str, file: Path | str | None = None) -> tuple[Contract, str]:
    """``symbol``'s contract from ``file`` or the shipped ones, and a note for the page ("" when it was found).

    A symbol found nowhere gets the FX default (``Costs()``: EURUSD retail ECN terms) and a note that says so.

    >>> contract, note = contract_for("usdjpy")
    >>> contract.costs.pip, contract.quote, note
    (0.01, 'JPY', '')
    >>> contract_for("GOOG")[1]
    'GOOG: not in the instruments files, so traded on the FX default contract (EURUSD retail ECN terms)'
    """
    contracts = {**shipped_instruments(), **(read_instruments(file) if file is not None else {})}
    key = symbol.upper().replace("/", "")
    if key in contracts:
        return contracts[key], ""
    return Contract(key), f"{symbol}: not in the instruments files, so traded on the FX default contract " \
                          "(EURUSD retail ECN terms)"
