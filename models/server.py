"""An HTTP prediction server for one registry entry, for Expert Advisors and other trading clients.

    >>> entry = Registry("registry").get("eurusd-lora")  # doctest: +SKIP
    >>> app = create_app(entry, Predictor.from_entry(entry), decide=threshold_exposure)  # doctest: +SKIP
    >>> serve(app, "127.0.0.1", 8000)   # blocks; the shell's `llmsignal serve` does the same  # doctest: +SKIP

    POST /predict   {"timestamps": [1704196800, ...], "close": [1.10312, ...]}   recent bars, oldest first
                 -> {"entry": "eurusd-lora@1", "timestamp": 1704369600, "close": 1.10451, "forecast": 1.10463,
                     "p_up": 0.53, "signal": 1, "expected_return_bps": 1.09, "sigma": 0.00093,
                     "q05": 1.10294, "q25": 1.10394, "q50": 1.10463, "q75": 1.10532, "q95": 1.10632}
    GET  /entries   the registry's entries          GET /health     liveness          GET /docs    OpenAPI

An entry tuned with ``--inputs ohlc`` needs ``high`` and ``low`` too (``open`` is checked when sent):
GET /health says which (``inputs``). Any bar sent with its low above its open or close, or its high below
them, is a 422 naming the bar.

The forecast is the entry's next-close forecast for the last bar sent, computed from
the bars in the request only (so it cannot look ahead), with ``sigma`` (standard deviation
of the next log-return) and the quantiles ``q05 .. q95`` of the next close from the same
100-bin distribution; ``signal`` is the
strategy rule given to ``create_app`` (``llmsignal serve`` gives ThresholdStrategy's,
``threshold_exposure``) applied to its expected return: 1 long, -1 short, 0 flat.

The model is loaded once and requests take turns with it (a lock: torch modules are
not safe to share between threads here). Every client mistake gets a 4xx whose
``detail`` says what is wrong, and the server keeps serving. It listens on loopback
unless given an API key, which clients then send in the ``X-API-Key`` header.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from llmsignal.finetune.bars import range_problem
from llmsignal.models.distribution import QUANTILES
from llmsignal.models.entries import entry_inputs
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Entry, Registry

MAX_BODY = 1 << 20  # 1 MB: ~50,000 bars, far more than any context needs
_DRAIN_LIMIT = 16 * MAX_BODY  # an oversized body is read this far so the client sees the 413 rather than a reset
API_KEY_HEADER = "X-API-Key"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ServeError(ValueError):
    """The server cannot start as asked (an exposed host without an API key, a port in use)."""


def _price(value: Any) -> float:
    """A price: a JSON number (not a string, not a boolean), finite and positive."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {type(value).__name__} {value!r}")
    try:
        price = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError("must be a positive finite price, got a number too large for a float") from None
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"must be a positive finite price, got {value}")
    return price


def _timestamp(value: Any) -> int | str:
    """Unix seconds (an integer, as MQL5's datetime) or an ISO-8601 string; kept as sent, to echo back."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be Unix seconds (an integer) or an ISO-8601 string, got {type(value).__name__} "
                         f"{value!r}")
    if isinstance(value, str) and not ISO_DATE.match(value):  # pandas would also read "now" and "today"
        raise ValueError(f"is not a time: {value!r} (Unix seconds or ISO-8601, like 2024-01-02T13:00:00Z)")
    nanoseconds(value)
    return value


def nanoseconds(value: int | str) -> int:
    """A request timestamp as UTC nanoseconds, to compare integers and strings alike (naive strings are UTC)."""
    try:
        stamp = pd.Timestamp(value, unit="s") if isinstance(value, int) else pd.Timestamp(value)
        if stamp is pd.NaT:
            raise ValueError("not a time")
        return stamp.value  # UTC nanoseconds for an aware time, and naive ones read as UTC
    except (ValueError, OverflowError, TypeError) as err:  # years outside 1677-2262 overflow nanoseconds
        raise ValueError(f"is not a time: {str(value)[:40]!r} ({str(err).splitlines()[0][:80]})") from None


Price = Annotated[float, PlainValidator(_price), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
Timestamp = Annotated[int | str, PlainValidator(_timestamp),
                      WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]})]


class PredictRequest(BaseModel):
    """Recent bars, oldest first; at least the entry's codec context + 1 of them (GET /health says how many)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"timestamps": [1704196800, 1704200400, 1704204000], "close": [1.10312, 1.10298, 1.10351]}]})
    timestamps: list[Timestamp] = Field(description="bar open times: Unix seconds or ISO-8601, strictly increasing")
    close: list[Price] = Field(description="closes, one per timestamp")
    open: list[Price] | None = None
    high: list[Price] | None = None
    low: list[Price] | None = None


class PredictResponse(BaseModel):
    entry: str = Field(description="the registry entry serving, NAME@VERSION")
    timestamp: int | str = Field(description="the last bar's timestamp, as sent")
    close: float = Field(description="the last bar's close")
    forecast: float = Field(description="the forecast of the next close")
    p_up: float = Field(description="the probability that the next close is above this one")
    signal: int = Field(description="1 long, -1 short, 0 flat: the served strategy rule on the expected return")
    expected_return_bps: float = Field(description="forecast / close - 1, in basis points")
    sigma: float = Field(description="the standard deviation of the next log-return (0.001 is 10 basis points)")
    q05: float = Field(description="the 5% quantile of the next close")
    q25: float = Field(description="the 25% quantile of the next close")
    q50: float = Field(description="the median of the next close")
    q75: float = Field(description="the 75% quantile of the next close")
    q95: float = Field(description="the 95% quantile of the next close")


def create_app(entry: Entry, predictor: Predictor, decide: Callable[[float], float], rule: str = "",
               api_key: str | None = None, registry: Registry | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor`` (built from ``entry``); ``registry`` defaults to the entry's own.

    ``decide`` maps the expected return of the next bar to an exposure in [-1, 1], the way the backtested
    strategy does, so the EA trades what the backtest traded; ``rule`` describes it in ``/health``.

    >>> rule = partial(threshold_exposure, threshold_bps=1)  # doctest: +SKIP
    >>> app = create_app(entry, Predictor.from_entry(entry), rule)  # doctest: +SKIP
    """
    registry = registry or Registry(entry.path.parent.parent)
    context = int(entry.metadata["codec"]["context"])
    inputs = entry_inputs(entry.metadata)
    model_lock = threading.Lock()
    app = FastAPI(title="llmsignal prediction server", version="1",
                  description=f"Next-close forecasts and trade signals from registry entry {entry.ref}.")
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_exception_handler(RequestValidationError, _validation_error)
    require_key = _key_check(api_key)

    @app.get("/health")
    def health() -> dict:
        """Liveness, the entry served, and the fewest bars /predict accepts (open, even with an API key)."""
        return {"status": "ok", "entry": entry.ref, "min_bars": context + 1, "signal_rule": rule,
                "inputs": inputs, "fields": ["timestamps", "close", *(("high", "low") if inputs == "ohlc" else ())]}

    @app.get("/entries", dependencies=[Depends(require_key)])
    def entries() -> dict:
        """The registry's entries (files are hashed only for the entry served, when it was loaded)."""
        rows = registry.list_rows(verify=False)
        for row in rows:  # a path names this machine's folders: the file name is all a client needs
            row.update({k: Path(row[k]).name for k in ("base", "data") if isinstance(row[k], str) and "/" in row[k]})
        return {"serving": entry.ref, "entries": rows}

    @app.post("/predict", response_model=PredictResponse, dependencies=[Depends(require_key)],
              responses={401: {"description": "missing or wrong X-API-Key"}, 413: {"description": "body over 1 MB"},
                         422: {"description": "bad bars: too few, unsorted, mismatched, non-positive, ..."}})
    def predict(request: PredictRequest) -> PredictResponse:
        """The next-close forecast, P(up), signal, sigma and quantiles for the last bar of ``request``."""
        closes = _checked_closes(request, context)
        ranges = _checked_ranges(request, inputs)
        with model_lock:  # one request at a time on the model; FastAPI runs this in its thread pool
            row = predictor.describe(closes, np.array([len(closes) - 1]), **ranges).iloc[0]
        forecast, p_up, close = float(row["forecast"]), float(row["p_up"]), float(closes[-1])
        quantiles = {name: float(row[name]) for name in QUANTILES}
        if not all(math.isfinite(v) and v > 0 for v in (forecast, *quantiles.values())) or not math.isfinite(p_up):
            raise HTTPException(422, f"the forecast is not a finite price ({forecast}): are the closes on a sane "
                                     "scale?")
        return PredictResponse(entry=entry.ref, timestamp=request.timestamps[-1], close=close, forecast=forecast,
                               p_up=min(max(p_up, 0.0), 1.0), signal=_signal(decide(forecast / close - 1.0)),
                               expected_return_bps=(forecast / close - 1.0) * 1e4, sigma=float(row["sigma"]),
                               **quantiles)

    return app


def _signal(exposure: float) -> int:
    return 1 if exposure > 0 else -1 if exposure < 0 else 0


def _checked_closes(request: PredictRequest, context: int) -> np.ndarray:
    """The closes, once the bars are enough, aligned and in time order; a 422 saying what is wrong otherwise."""
    count = len(request.timestamps)
    for name in ("close", "open", "high", "low"):
        values = getattr(request, name)
        if values is not None and len(values) != count:
            raise HTTPException(422, f"{name} has {len(values)} values but timestamps has {count}: "
                                     "send one value per bar")
    if count < context + 1:
        raise HTTPException(422, f"too few bars: got {count}, need at least {context + 1} "
                                 f"(the model reads {context} returns, so {context + 1} closes)")
    stamps = [nanoseconds(t) for t in request.timestamps]
    for i in range(1, count):
        if stamps[i] <= stamps[i - 1]:
            problem = "duplicates" if stamps[i] == stamps[i - 1] else "is before"
            raise HTTPException(422, f"timestamps must be strictly increasing, oldest bar first: timestamps[{i}] "
                                     f"({request.timestamps[i]!r}) {problem} timestamps[{i - 1}] "
                                     f"({request.timestamps[i - 1]!r})")
    return np.asarray(request.close, dtype=float)


def _checked_ranges(request: PredictRequest, inputs: str) -> dict[str, np.ndarray]:
    """``high`` and ``low`` for an ohlc entry (a 422 when missing); a 422 naming the first bar whose low is above
    its open or close or whose high is below them, whatever the entry reads."""
    if inputs == "ohlc":
        missing = [name for name in ("high", "low") if getattr(request, name) is None]
        if missing:
            raise HTTPException(422, f"this entry reads each bar's range: send {' and '.join(missing)} too "
                                     "(one value per bar, like close)")
    close = np.asarray(request.close, dtype=float)
    given = {name: np.asarray(values, dtype=float) for name in ("open", "high", "low")
             if (values := getattr(request, name)) is not None}
    opens = given.get("open", close)
    # a price not sent stands in as the one that cannot be wrong: only what was sent is judged
    high, low = given.get("high", np.maximum(opens, close)), given.get("low", np.minimum(opens, close))
    found = range_problem(opens, high, low, close)
    if found is not None:
        position, problem = found
        raise HTTPException(422, f"bar {position} ({request.timestamps[position]!r}) has {problem}: a bar's low "
                                 "is at most its open and close, its high at least them")
    return {"high": given["high"], "low": given["low"]} if inputs == "ohlc" else {}


def _check_api_key(api_key: str | None) -> None:
    if api_key is not None and not (api_key.isascii() and api_key.isprintable() and api_key.strip() == api_key):
        # HTTP headers travel as bytes that servers read as Latin-1: a non-ASCII key would never match as typed
        raise ServeError("--api-key must be printable ASCII without surrounding spaces")


def _key_check(api_key: str | None):
    """A dependency that demands ``X-API-Key: api_key`` (compared in constant time), or nothing if no key is set."""
    _check_api_key(api_key)
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def check(sent: str | None = Depends(header)) -> None:
        if not api_key:
            return
        if not sent:
            raise HTTPException(401, f"missing {API_KEY_HEADER} header: this server requires an API key")
        if not hmac.compare_digest(sent.encode(), api_key.encode()):
            raise HTTPException(401, f"wrong {API_KEY_HEADER}")

    return check


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """One readable line instead of FastAPI's list, and no echo of the input (a NaN would not even encode)."""
    errors = exc.errors()
    lines = [_describe(error) for error in errors[:5]]
    more = f" (and {len(errors) - 5} more problems)" if len(errors) > 5 else ""
    return JSONResponse({"detail": "; ".join(lines) + more}, status_code=422)


def _describe(error: dict) -> str:
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        hint = " (a trailing NUL byte? MQL5's StringToCharArray adds one)" if reason == "Extra data" else ""
        return f"the body is not valid JSON: {reason} at byte {loc[0] if loc else '?'}{hint}"
    if not loc and isinstance(error.get("input"), str | bytes):
        return "the body must be a JSON object sent with header Content-Type: application/json"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field (expected timestamps, close and optionally open, high, low)"
    return f"{where}: {message}"


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or streamed, before the app sees it.

    The body is buffered (it is small) and replayed to the app; an oversized one is read
    and discarded up to ``_DRAIN_LIMIT`` so that the client, still sending, gets the answer.
    """

    def __init__(self, app, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        too_big = not declared.isdigit() or int(declared) > self.limit
        chunks, size, more = [], 0, True
        while more and size <= _DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            too_big = too_big or size > self.limit
            if not too_big:
                chunks.append(body)
            more = message.get("more_body", False)
        if too_big:
            detail = f"the body is over {self.limit} bytes ({self.limit / 2**20:g} MB): send fewer bars"
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to an outside address


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key: anyone could query the model and read signals."""
    _check_api_key(api_key)
    if not is_loopback(host) and not api_key:
        raise ServeError(f"refusing to listen on {host}: it is reachable from other machines; give --api-key KEY "
                         "(clients send it in the X-API-Key header) or listen on 127.0.0.1")


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound socket (port 0: a free one), so a port in use is a clear error and tests never race for ports."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise ServeError(f"cannot listen on {host}:{port}: {err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          log_level: str = "info") -> None:
    """Serve ``app`` in the foreground until Ctrl-C (pass the app's ``api_key`` for the exposure check)."""
    check_bind(host, api_key)
    sock = bind_socket(host, port)
    print(f"llmsignal: serving on {url_of(sock)} (API docs: {url_of(sock)}/docs); Ctrl-C stops", flush=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run(sockets=[sock])


@dataclass
class RunningServer:
    """A server running in a background thread (tests, benchmarks); ``stop()`` ends it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> RunningServer:
    """Start ``app`` on ``host`` (a free port by default) in a daemon thread; returns once it accepts requests.

    >>> running = start_in_thread(app)  # doctest: +SKIP
    >>> httpx.get(f"{running.url}/health").json()  # doctest: +SKIP
    >>> running.stop()  # doctest: +SKIP
    """
    sock = bind_socket(host, port)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="llmsignal-server")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise ServeError(f"the server on {url} did not start within {timeout:g}s")
        time.sleep(0.01)
    return RunningServer(url, server, thread, sock)
