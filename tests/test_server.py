"""The prediction server, over real HTTP on loopback, fed exactly what examples/mt5/LLMSignalEA.mq5 sends."""

import ipaddress
import json
import math
import threading
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsignal.models.predictor import Predictor
from llmsignal.models.server import (
    MAX_BODY,
    ServeError,
    bind_socket,
    check_bind,
    create_app,
    start_in_thread,
)
from llmsignal.strategies.threshold import threshold_exposure
from tests.conftest import TINY_CONTEXT as CONTEXT
from tests.conftest import tiny_entries

KEY = "s3cret-key"
DIGITS = 5  # EURUSD's _Digits in MetaTrader 5


@pytest.fixture(scope="module")
def served(tiny_base, tmp_path_factory):
    """A tiny trained entry served twice on loopback: without an API key, and with one."""
    folder = tmp_path_factory.mktemp("serve")
    entries, split, path = tiny_entries(folder, tiny_base, prefix="srv")
    entry = entries["lora"]
    predictor = Predictor.from_entry(entry)
    rule = partial(threshold_exposure, threshold_bps=0.5)
    open_server = start_in_thread(create_app(entry, predictor, rule, "threshold 0.5 bp"))
    keyed_server = start_in_thread(create_app(entry, predictor, rule, api_key=KEY))
    yield SimpleNamespace(entry=entry, bars=split.bars, url=open_server.url, keyed_url=keyed_server.url,
                          predictor=predictor, rule=rule)
    open_server.stop()
    keyed_server.stop()


def ea_body(bars: pd.DataFrame) -> bytes:
    """The body LLMSignalEA.mq5 builds: Unix-second times and closes at _Digits decimals, oldest first, no spaces."""
    times = ",".join(str(int(t.timestamp())) for t in bars.index)
    closes = ",".join(f"{c:.{DIGITS}f}" for c in bars["close"])
    return f'{{"timestamps":[{times}],"close":[{closes}]}}'.encode()


def ea_post(url: str, body: bytes, key: str = "") -> httpx.Response:
    """The EA's WebRequest: POST with a JSON content type, and X-API-Key only when its input is set."""
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    return httpx.post(f"{url}/predict", content=body, headers=headers, timeout=30)


def test_the_ea_request_gets_the_predictors_forecast_and_signal(served):
    window = served.bars.iloc[-64:]
    response = ea_post(served.url, ea_body(window))
    assert response.status_code == 200, response.text
    answer = response.json()
    closes = np.round(window["close"].to_numpy(), DIGITS)
    forecast, p_up = Predictor.from_entry(served.entry).forecast(closes, np.array([len(closes) - 1]))
    assert answer["entry"] == served.entry.ref
    assert answer["timestamp"] == int(window.index[-1].timestamp())
    assert answer["close"] == closes[-1]
    assert math.isfinite(answer["forecast"]) and answer["forecast"] > 0
    assert answer["forecast"] == pytest.approx(forecast[0], rel=1e-12)
    assert 0.0 <= answer["p_up"] <= 1.0 and answer["p_up"] == pytest.approx(p_up[0], rel=1e-12)
    assert answer["signal"] in (-1, 0, 1)
    assert answer["expected_return_bps"] == pytest.approx((answer["forecast"] / answer["close"] - 1) * 1e4)
    assert answer["signal"] == threshold_exposure(answer["forecast"] / answer["close"] - 1, 0.5)


def test_the_answer_carries_sigma_and_the_quantiles_of_the_next_close(served):
    window = served.bars.iloc[-64:]
    answer = ea_post(served.url, ea_body(window)).json()
    closes = np.round(window["close"].to_numpy(), DIGITS)
    expected = Predictor.from_entry(served.entry).describe(closes, np.array([len(closes) - 1])).iloc[0]
    quantiles = [answer[name] for name in ("q05", "q25", "q50", "q75", "q95")]
    assert answer["sigma"] > 0 and quantiles == sorted(quantiles) and quantiles[0] < answer["close"] < quantiles[-1]
    for name in ("sigma", "q05", "q25", "q50", "q75", "q95"):
        assert answer[name] == pytest.approx(expected[name], rel=1e-12), name


def test_a_window_gets_the_backtests_forecast_for_its_last_bar(served):
    """The server's forecast for bars up to t is the one the backtest makes at t from the whole series."""
    closes = np.round(served.bars["close"].to_numpy(), DIGITS)
    t = len(closes) - 40
    window = served.bars.iloc[t - CONTEXT:t + 1].assign(close=closes[t - CONTEXT:t + 1])
    answer = ea_post(served.url, ea_body(window)).json()
    forecast, _ = Predictor.from_entry(served.entry).forecast(closes, np.array([t]))
    assert answer["forecast"] == pytest.approx(forecast[0], rel=1e-12)


@pytest.mark.parametrize("exposure, signal", [(-1.0, -1), (0.0, 0), (0.3, 1)])
def test_the_server_sends_the_signal_of_the_rule_it_serves(served, exposure, signal):
    server = start_in_thread(create_app(served.entry, Predictor.from_entry(served.entry), lambda r: exposure))
    try:
        assert ea_post(server.url, ea_body(served.bars.iloc[-30:])).json()["signal"] == signal
    finally:
        server.stop()


def _body(bars: int = 20, **changes) -> bytes:
    payload = {"timestamps": [1704067200 + 3600 * i for i in range(bars)],
               "close": [round(1.1 + 0.001 * math.sin(i), 5) for i in range(bars)], **changes}
    return json.dumps(payload).encode()  # json.dumps writes NaN as the bare NaN that some clients send


BAD_REQUESTS = {
    "too few bars": (_body(bars=CONTEXT), "too few bars: got 16, need at least 17"),
    "NaN close": (_body(close=[1.1] * 5 + [float("nan")] + [1.1] * 14), "close[5]: must be a positive finite price"),
    "zero close": (_body(close=[1.1] * 19 + [0.0]), "close[19]: must be a positive finite price, got 0"),
    "negative high": (_body(high=[1.2] * 19 + [-1.0]), "high[19]: must be a positive finite price"),
    "unsorted timestamps": (_body(timestamps=list(range(10, 0, -1)) + list(range(20, 30))),
                            "timestamps must be strictly increasing"),
    "duplicate timestamps": (_body(timestamps=[1, 1] + list(range(2, 20))), "timestamps[1] (1) duplicates"),
    "mismatched lengths": (_body(close=[1.1] * 19), "close has 19 values but timestamps has 20"),
    "prices as strings": (_body(close=["1.1"] * 20), "close[0]: must be a number, got str"),
    "close not a list": (_body(close=1.1), "close: Input should be a valid list"),
    "float timestamps": (_body(timestamps=[1.5 + i for i in range(20)]), "must be Unix seconds"),
    "unparseable time": (_body(timestamps=["soon"] + [f"2024-01-01T{i:02d}:00" for i in range(1, 20)]),
                         "timestamps[0]: is not a time"),
    "missing close": (json.dumps({"timestamps": [1, 2]}).encode(), "close: Field required"),
    "unknown field": (_body(closes=[1.0]), "closes: unknown field"),
    "not JSON": (b'{"timestamps": [1,', "not valid JSON"),
    "a JSON array": (b"[1, 2, 3]", "Input should be a valid dictionary"),
    "MQL5 trailing NUL": (_body() + b"\x00", "trailing NUL"),
    "a 400-digit close": (_body(close=[10**400] + [1.1] * 19), "close[0]: must be a positive finite price"),
    "a timestamp of 'now'": (_body(timestamps=["now"] + [f"2024-01-01T{i:02d}:00" for i in range(1, 20)]),
                             "timestamps[0]: is not a time: 'now'"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(served, name):
    body, message = BAD_REQUESTS[name]
    response = ea_post(served.url, body)
    assert 400 <= response.status_code < 500, response.text
    assert message in response.json()["detail"]
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"


def test_an_oversized_body_is_refused_before_parsing(served):
    body = _body(bars=60_000)
    assert len(body) > MAX_BODY
    response = ea_post(served.url, body)
    assert response.status_code == 413 and "over 1048576 bytes" in response.json()["detail"]


def test_a_body_without_json_content_type_is_explained(served):
    response = httpx.post(f"{served.url}/predict", content=_body(), headers={"Content-Type": "text/plain"})
    assert response.status_code == 422 and "Content-Type: application/json" in response.json()["detail"]


def test_the_api_key_is_required_when_set(served):
    body = ea_body(served.bars.iloc[-30:])
    missing, wrong, right = ea_post(served.keyed_url, body), ea_post(served.keyed_url, body, "nope"), \
        ea_post(served.keyed_url, body, KEY)
    assert missing.status_code == 401 and "missing X-API-Key" in missing.json()["detail"]
    assert wrong.status_code == 401 and "wrong X-API-Key" in wrong.json()["detail"]
    assert right.status_code == 200 and right.json()["signal"] in (-1, 0, 1)
    assert httpx.get(f"{served.keyed_url}/entries").status_code == 401
    assert httpx.get(f"{served.keyed_url}/entries", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(f"{served.keyed_url}/health").status_code == 200


def test_entries_health_and_docs(served):
    listing = httpx.get(f"{served.url}/entries").json()
    assert listing["serving"] == served.entry.ref
    assert [(row["name"], row["version"]) for row in listing["entries"]] == [("srv-lora", served.entry.version)]
    health = httpx.get(f"{served.url}/health").json()
    assert health == {"status": "ok", "entry": served.entry.ref, "min_bars": CONTEXT + 1,
                      "signal_rule": "threshold 0.5 bp", "inputs": "close", "fields": ["timestamps", "close"]}
    assert "swagger" in httpx.get(f"{served.url}/docs").text.lower()
    assert "/predict" in httpx.get(f"{served.url}/openapi.json").json()["paths"]


def test_concurrent_clients_get_the_same_answers(served):
    body = ea_body(served.bars.iloc[-50:])
    answers, errors = [], []

    def client() -> None:
        try:
            for _ in range(2):
                answers.append(ea_post(served.url, body).json()["forecast"])
        except Exception as err:  # reported by the assertion below, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(answers) == 12 and len(set(answers)) == 1


def test_the_server_still_serves_after_bad_requests(served):
    good = ea_body(served.bars.iloc[-20:])
    before = ea_post(served.url, good).json()["forecast"]
    for body, _ in BAD_REQUESTS.values():
        assert 400 <= ea_post(served.url, body).status_code < 500
    after = ea_post(served.url, good)
    assert after.status_code == 200 and after.json()["forecast"] == before


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_an_exposed_address_needs_an_api_key(host):
    with pytest.raises(ServeError, match="refusing to listen"):
        check_bind(host, None)
    check_bind(host, KEY)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_key_and_a_server_there_answers_this_machine_without_one(served, host):
    check_bind(host, None)
    try:
        running = start_in_thread(create_app(served.entry, served.predictor, served.rule), host)
    except ServeError as err:  # ::1 on a machine without IPv6
        pytest.skip(str(err))
    try:
        assert ipaddress.ip_address(running.sock.getsockname()[0]).is_loopback  # only this machine reaches it
        response = ea_post(running.url, ea_body(served.bars.iloc[-20:]))  # no X-API-Key header
        assert response.status_code == 200 and response.json()["entry"] == served.entry.ref
    finally:
        running.stop()


def test_a_port_in_use_is_a_clear_error():
    taken = bind_socket("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(ServeError, match="cannot listen on 127.0.0.1"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_entries_show_no_paths_of_this_machine(served):
    listing = httpx.get(f"{served.url}/entries").text
    assert "/tmp" not in listing and str(Path.home()) not in listing
    assert json.loads(listing)["entries"][0]["data"] == "bars.csv"


@pytest.mark.parametrize("key", ["clé-secrète", " padded ", "tab\tkey"])
def test_an_api_key_that_headers_cannot_carry_is_refused(served, key):
    with pytest.raises(ServeError, match="printable ASCII"):
        check_bind("127.0.0.1", key)
    with pytest.raises(ServeError, match="printable ASCII"):
        create_app(served.entry, Predictor.from_entry(served.entry), lambda r: 0.0, api_key=key)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=10), inner,
                                                                                          max_size=5),
                           max_leaves=60)
FIELDS = {"timestamps": JSON_VALUES | st.lists(st.integers(), max_size=40),
          "close": JSON_VALUES | st.lists(st.floats(), max_size=40),
          "high": JSON_VALUES, "open": JSON_VALUES, "low": JSON_VALUES}
BODIES = st.fixed_dictionaries({}, optional=FIELDS) | JSON_VALUES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_no_generated_body_gets_a_server_error(served, body):
    text = json.dumps(body)  # Python's json writes NaN and Infinity bare, as some clients do
    response = httpx.post(f"{served.url}/predict", content=text.encode(), timeout=30,
                          headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (text[:300], response.text[:300])


@pytest.fixture(scope="module")
def served_ohlc(tiny_base, tmp_path_factory):
    """A tiny entry tuned with --inputs ohlc, served on loopback."""
    folder = tmp_path_factory.mktemp("serve-ohlc")
    entries, split, _ = tiny_entries(folder, tiny_base, prefix="srv", inputs="ohlc")
    predictor = Predictor.from_entry(entries["lora"])
    server = start_in_thread(create_app(entries["lora"], predictor, partial(threshold_exposure, threshold_bps=0.5)))
    yield SimpleNamespace(bars=split.bars, url=server.url, predictor=predictor)
    server.stop()


def ea_ohlc_body(bars: pd.DataFrame, **changes) -> bytes:
    """What the EA sends with InpSendOHLC: times, then close, open, high and low at _Digits decimals."""
    payload = {"timestamps": [int(t.timestamp()) for t in bars.index],
               **{name: [round(float(v), DIGITS) for v in bars[name]] for name in ("close", "open", "high", "low")}}
    return json.dumps({**payload, **changes}).encode()


def test_an_ohlc_entry_forecasts_from_the_bars_ranges(served_ohlc):
    bars = served_ohlc.bars.iloc[-30:].round(DIGITS)
    health = httpx.get(f"{served_ohlc.url}/health").json()
    assert health["inputs"] == "ohlc" and health["fields"] == ["timestamps", "close", "high", "low"]
    response = ea_post(served_ohlc.url, ea_ohlc_body(bars))
    assert response.status_code == 200, response.text
    expected = served_ohlc.predictor.describe(bars["close"].to_numpy(), np.array([len(bars) - 1]),
                                              high=bars["high"].to_numpy(), low=bars["low"].to_numpy())
    assert response.json()["forecast"] == pytest.approx(expected["forecast"].iloc[0], rel=1e-12)
    wider = bars.assign(high=bars["high"] * 1.01)
    assert ea_post(served_ohlc.url, ea_ohlc_body(wider)).json()["sigma"] != response.json()["sigma"]


def test_an_ohlc_entry_sent_closes_only_says_what_to_send(served_ohlc):
    response = ea_post(served_ohlc.url, ea_body(served_ohlc.bars.iloc[-30:]))
    assert response.status_code == 422 and "send high and low too" in response.json()["detail"]


@pytest.mark.parametrize("price, factor, problem", [("low", 1.01, "its low"), ("high", 0.99, "its high")])
def test_a_bar_whose_range_does_not_hold_its_open_and_close_is_a_422(served_ohlc, served, price, factor, problem):
    bars = served_ohlc.bars.iloc[-30:]
    broken = bars.copy()
    broken.iloc[12, broken.columns.get_loc(price)] = max(broken["open"].iloc[12], broken["close"].iloc[12]) * factor \
        if price == "low" else min(broken["open"].iloc[12], broken["close"].iloc[12]) * factor
    for url in (served_ohlc.url, served.url):  # a close entry judges the ranges sent to it too
        response = ea_post(url, ea_ohlc_body(broken))
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail.startswith(f"bar 12 ({int(bars.index[12].timestamp())}) has {problem}")
        assert ("above" if price == "low" else "below") in detail
