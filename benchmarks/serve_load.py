"""Load test of the prediction server on loopback: requests per second and latency percentiles.

    python benchmarks/serve_load.py --entry eurusd-lora [--registry registry] [--data CSV] [--precision bfloat16]
    python benchmarks/serve_load.py --quick          # trains a tiny entry in a temporary folder first

The server runs in this process on 127.0.0.1 (a free port) and ``--clients`` threads
(default 8), each with its own HTTP connection, send EA-style requests (``--bars`` closed
bars, sliding windows over the data) until ``--requests`` (default 400) have been sent or
``--max-seconds`` (default 120) have passed. Requests are serialised on the model, so
requests/s measures the model's throughput plus the HTTP overhead, and latency includes
the wait for the model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

if not __package__:  # `python benchmarks/serve_load.py`: the repository root, where `benchmarks` is a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import pandas as pd

from benchmarks.synthetic import synthetic_bars
from llmsignal.data import load_bars
from llmsignal.finetune.bars import DataError
from llmsignal.finetune.precision import PRECISIONS
from llmsignal.models.predictor import Predictor
from llmsignal.models.registry import Entry, Registry, RegistryError
from llmsignal.models.server import create_app, start_in_thread
from llmsignal.strategies.threshold import threshold_exposure

QUICK_CONTEXT = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", help="NAME[@VERSION] in --registry")
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--data", help="bars to send (default: the bundled EURUSD H1; synthetic with --quick)")
    parser.add_argument("--quick", action="store_true", help="without --entry: train a tiny entry to serve")
    parser.add_argument("--requests", type=int, default=400, help="requests in all (default 400)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    parser.add_argument("--bars", type=int, help="bars per request (default: the entry's context + 1, at least 64)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="as `llmsignal serve --precision`")
    args = parser.parse_args(argv)
    if not args.entry and not args.quick:
        parser.error("give --entry NAME[@VERSION], or --quick to train a tiny entry")
    if args.requests < 1 or args.clients < 1 or args.max_seconds <= 0:
        parser.error("--requests, --clients and --max-seconds must be positive")
    return args


def tiny_entry(folder: Path) -> tuple[Entry, str]:
    """A two-layer GPT-2 on the embedded tokenizer, LoRA-tuned for 3 steps: seconds on a CPU."""
    import torch
    from transformers import GPT2LMHeadModel

    from llmsignal.finetune.bars import split_bars
    from llmsignal.finetune.base import embedded_config, embedded_tokenizer, load_base
    from llmsignal.finetune.methods import make_method
    from llmsignal.finetune.train import TrainConfig
    from llmsignal.models.entries import train_entry

    tokenizer = embedded_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(embedded_config(len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=192))
    model.save_pretrained(folder / "base")
    tokenizer.save_pretrained(folder / "base")
    data = folder / "bars.csv"
    synthetic_bars(600).to_csv(data)
    split = split_bars(load_bars(data), context=QUICK_CONTEXT)
    entry, _ = train_entry(split, load_base(str(folder / "base")), make_method("lora"), Registry(folder / "reg"),
                           "bench-lora", TrainConfig(steps=3, batch_size=4, window=QUICK_CONTEXT + 1), str(data),
                           QUICK_CONTEXT)
    return entry, str(data)


def request_bodies(bars: pd.DataFrame, count: int, windows: int = 32) -> list[bytes]:
    """EA-style bodies (Unix seconds, closes at 5 decimals) of ``count`` bars, sliding over the last bars."""
    bodies = []
    for shift in range(min(windows, len(bars) - count + 1)):
        window = bars.iloc[len(bars) - count - shift:len(bars) - shift]
        times = ",".join(str(int(t.timestamp())) for t in window.index)
        closes = ",".join(f"{c:.5f}" for c in window["close"])
        bodies.append(f'{{"timestamps":[{times}],"close":[{closes}]}}'.encode())
    return bodies


def load(url: str, bodies: list[bytes], requests: int, clients: int, max_seconds: float) -> tuple[list, int, float]:
    """Send ``requests`` posts from ``clients`` threads; returns latencies (s), errors and wall time."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        nonlocal sent, errors
        with httpx.Client(base_url=url, timeout=60, headers={"Content-Type": "application/json"}) as http:
            while True:
                with lock:
                    if sent >= requests or time.monotonic() > deadline:
                        return
                    body = bodies[sent % len(bodies)]
                    sent += 1
                began = time.perf_counter()
                try:
                    ok = http.post("/predict", content=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    errors += not ok

    began = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 60)
    return latencies, errors, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        try:
            if args.entry:
                entry, data = Registry(args.registry).get(args.entry), args.data
            else:
                print("training a tiny entry (--quick) ...", flush=True)
                entry, data = tiny_entry(Path(tmp))
                data = args.data or data
            predictor = Predictor.from_entry(entry, precision=args.precision)
            count = args.bars or max(entry.metadata["codec"]["context"] + 1, 64)
            bars = load_bars(data)
            bodies = request_bodies(bars, count)
            if not bodies:
                raise DataError(f"{data or 'EURUSD'} has {len(bars)} bars, fewer than --bars {count}")
        except (RegistryError, DataError) as err:
            print(f"serve_load: error: {err}", file=sys.stderr)
            return 2
        running = start_in_thread(create_app(entry, predictor, threshold_exposure), host="127.0.0.1")
        try:
            with httpx.Client(base_url=running.url, timeout=60) as http:  # warm-up, and a check that it answers
                warm = http.post("/predict", content=bodies[0], headers={"Content-Type": "application/json"})
                if warm.status_code != 200:
                    print(f"serve_load: error: the server refused the request: {warm.text}", file=sys.stderr)
                    return 2
            latencies, errors, wall = load(running.url, bodies, args.requests, args.clients, args.max_seconds)
        finally:
            running.stop()
    print_table(entry.ref, count, args.clients, latencies, errors, wall)
    return 0 if latencies and not errors else 1


def print_table(ref: str, bars: int, clients: int, latencies: list[float], errors: int, wall: float) -> None:
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    rows = [("entry", ref), ("bars/request", bars), ("clients", clients), ("requests", len(latencies)),
            ("errors", errors), ("seconds", f"{wall:.2f}"), ("requests/s", f"{len(latencies) / wall:.1f}"),
            ("p50 latency ms", f"{np.percentile(ms, 50):.1f}"), ("p99 latency ms", f"{np.percentile(ms, 99):.1f}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
