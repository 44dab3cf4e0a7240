"""Feature service latency: compute and online lookup for one vehicle (and for 1,000).

Prints median and p99 over many sequential calls. Two modes, one client interface:

- in-process (default): the app from ``create_app(get_settings())`` driven by
  FastAPI's ``TestClient`` — the service's own cost, no network or HTTP server;
- ``--url``: a running feature service over HTTP with a keep-alive ``httpx`` client,
  as the gateway calls it.

Both need a Redis holding a materialized online store, found through the usual
``VROOM_*`` settings. For example, on the default local stack:

    uv run vroom up --detach
    uv run vroom seed --data-dir ../shared/data && uv run vroom materialize
    uv run python benchmarks/feature_service.py
    uv run python -m vroom_feature_service &        # then, over HTTP:
    uv run python benchmarks/feature_service.py --url http://127.0.0.1:8082
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from fastapi.testclient import TestClient
from timing import latencies_ms, summary

from vroom_common.logs import configure_logging
from vroom_common.settings import get_settings
from vroom_feature_service.app import create_app

VEHICLE = {
    "technology": 1,
    "actual_price": 67.85,
    "recommended_price": 59.0,
    "num_images": 5,
    "street_parked": 0,
    "description": 7,
}


def checked(call: Callable[[], httpx.Response]) -> Callable[[], object]:
    """``call``, failing the benchmark on any non-2xx answer."""
    return lambda: call().raise_for_status()


def report(name: str, samples: list[float]) -> None:
    print(f"{name:<32} {summary(samples)}")


@contextmanager
def client_for(url: str | None) -> Iterator[httpx.Client]:
    if url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    else:
        with TestClient(create_app(get_settings())) as client:
            yield client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running feature service (default: in-process app).")
    parser.add_argument("--calls", type=int, default=1000, help="Timed calls per one-vehicle case.")
    parser.add_argument("--batch-calls", type=int, default=100, help="Timed calls per batch case.")
    parser.add_argument("--vehicle-id", type=int, default=1, help="A materialized vehicle.")
    args = parser.parse_args()
    configure_logging(level="WARNING")

    with client_for(args.url) as client:
        ready = client.get("/readyz")
        if ready.status_code != 200:
            raise SystemExit(f"feature service not ready: {ready.text}")
        found = client.post("/v1/features/online", json={"vehicle_ids": [args.vehicle_id]})
        if found.json()["missing"]:
            raise SystemExit(f"vehicle {args.vehicle_id} is not in the online store")
        fleet = [row["vehicle_id"] for row in client.get("/v1/features/offline").json()["rows"]]
        ids = fleet[:1000] or [args.vehicle_id]

        print(f"feature service: {args.url or 'in-process (TestClient)'}")
        one = {"vehicles": [VEHICLE]}
        report(
            "compute, 1 vehicle",
            latencies_ms(
                checked(lambda: client.post("/v1/features/compute", json=one)), args.calls
            ),
        )
        lookup = {"vehicle_ids": [args.vehicle_id]}
        report(
            "online lookup, 1 vehicle",
            latencies_ms(
                checked(lambda: client.post("/v1/features/online", json=lookup)), args.calls
            ),
        )
        many = {"vehicles": [VEHICLE] * 1000}
        report(
            "compute, 1,000 vehicles",
            latencies_ms(
                checked(lambda: client.post("/v1/features/compute", json=many)), args.batch_calls
            ),
        )
        lookups = {"vehicle_ids": ids}
        report(
            f"online lookup, {len(ids):,} vehicles",
            latencies_ms(
                checked(lambda: client.post("/v1/features/online", json=lookups)), args.batch_calls
            ),
        )


if __name__ == "__main__":
    main()
