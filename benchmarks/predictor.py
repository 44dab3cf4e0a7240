"""Round-trip latency of a running predictor: one row over gRPC and over REST.

Start the stack first (``uv run vroom run`` trains and serves a champion), then:

    uv run python benchmarks/predictor.py [--calls 1000]

Prints median and p99 over ``--calls`` sequential requests per transport, after a
warm-up, using KServe's own gRPC client and a pooled HTTP client.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from kserve import InferenceGRPCClient, InferInput, InferRequest
from timing import latencies_ms, summary

from vroom_common.settings import get_settings
from vroom_features.contract import INPUT_DATATYPE, INPUT_NAME, N_FEATURES
from vroom_predictor.loading import PROBE_ROW

ROW = PROBE_ROW


async def grpc_latencies(target: str, model: str, calls: int) -> list[float]:
    tensor = InferInput(INPUT_NAME, [1, N_FEATURES], INPUT_DATATYPE)
    tensor.set_data_from_numpy(ROW)
    request = InferRequest(model, infer_inputs=[tensor])
    samples = []
    async with InferenceGRPCClient(target, timeout=5, retries=0) as client:
        for i in range(calls + 50):
            started = time.perf_counter()
            await client.infer(request)
            if i >= 50:
                samples.append((time.perf_counter() - started) * 1000)
    return samples


def rest_latencies(base: str, model: str, calls: int) -> list[float]:
    body = {"inputs": [{"name": INPUT_NAME, "datatype": INPUT_DATATYPE,
                        "shape": [1, N_FEATURES], "data": ROW.ravel().tolist()}]}  # fmt: skip
    with httpx.Client(base_url=base, timeout=5) as client:
        return latencies_ms(
            lambda: client.post(f"/v2/models/{model}/infer", json=body).raise_for_status(),
            calls,
            warmup=50,
        )


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", default=f"127.0.0.1:{settings.predictor_grpc_port}")
    parser.add_argument("--rest", default=settings.predictor_url)
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    grpc_ms = asyncio.run(grpc_latencies(args.grpc, args.model, args.calls))
    rest_ms = rest_latencies(args.rest, args.model, args.calls)
    print(f"one row, {args.calls} sequential calls")
    print(f"  gRPC (KServe InferenceGRPCClient): {summary(grpc_ms)}")
    print(f"  REST (httpx, keep-alive):          {summary(rest_ms)}")


if __name__ == "__main__":
    main()
