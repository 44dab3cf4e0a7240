"""Every prediction a running gateway serves for the fleet, written to one JSON file, so
two builds can be compared bit for bit (a speed change must not change an answer).

Asks for: ``/predict/batch`` of the fleet's first 1,000 vehicles at each calibrated
interval level, ``/predict/id`` for every fleet vehicle, and ``/predict`` for the first
200 vehicles one by one. For example, before and after a change:

    uv run python benchmarks/predictions_snapshot.py --data-dir ../shared/data before.json
    # ... switch builds, restart the stack ...
    uv run python benchmarks/predictions_snapshot.py --data-dir ../shared/data after.json
    cmp before.json after.json && echo identical
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx

from vroom_cli.bench import batch_vehicles
from vroom_features.contract import INTERVAL_LEVELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="The JSON file to write.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="The gateway.")
    parser.add_argument("--data-dir", type=Path, default=None, help="The fleet's CSV folder.")
    parser.add_argument("--singles", type=int, default=200, help="Vehicles sent one by one.")
    args = parser.parse_args()

    fleet = batch_vehicles(args.data_dir)
    vehicles = httpx.get(f"{args.url}/vehicles", timeout=30).json()
    ids = [v["vehicle_id"] for v in vehicles if v["source"] == "csv"]
    with httpx.Client(base_url=args.url, timeout=30) as client:

        def post(path: str, body: object) -> object:
            response = client.post(path, json=body)
            response.raise_for_status()
            return response.json()

        snapshot = {
            "batch": {
                f"{level:g}": post(f"/predict/batch?interval_level={level:g}", fleet)
                for level in INTERVAL_LEVELS
            },
            "by_id": {str(i): post("/predict/id", {"vehicle_id": i}) for i in sorted(ids)},
            "one": [post("/predict", vehicle) for vehicle in fleet[: args.singles]],
        }
    args.out.write_text(json.dumps(snapshot, sort_keys=True, indent=1) + "\n")
    print(f"{args.out}: {len(fleet)} batched, {len(ids)} by id, {args.singles} one by one")


if __name__ == "__main__":
    main()
