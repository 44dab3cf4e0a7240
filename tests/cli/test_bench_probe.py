"""What ``vroom bench`` measures besides latency: stage means from two scrapes, CPU and
memory of processes."""

from __future__ import annotations

import os
import time

from vroom_cli.bench_probe import ProcessProbe, cpu_ms_per_request, scrape_text, stage_means


def exposition(count: int, stage_sums: dict[str, float], server_sum: float) -> str:
    lines = ["# TYPE vroom_gateway_stage_seconds histogram"]
    for stage, total in stage_sums.items():
        labels = f'route="/predict",stage="{stage}"'
        lines += [
            f"vroom_gateway_stage_seconds_count{{{labels}}} {count}",
            f"vroom_gateway_stage_seconds_sum{{{labels}}} {total}",
        ]
    post = 'service="gateway",route="/predict",method="POST"'
    get = 'service="gateway",route="/predict",method="GET"'  # another method: left out
    lines += [
        "# TYPE http_request_duration_seconds histogram",
        f"http_request_duration_seconds_count{{{post}}} {count}",
        f"http_request_duration_seconds_sum{{{post}}} {server_sum}",
        f"http_request_duration_seconds_count{{{get}}} 50",
        f"http_request_duration_seconds_sum{{{get}}} 9.0",
    ]
    return "\n".join(lines) + "\n"


def test_stage_means_are_the_difference_of_two_scrapes() -> None:
    before = scrape_text(
        exposition(
            10, {"parse": 0.01, "features": 0.02, "inference": 0.03, "serialize": 0.001}, 0.07
        )
    )
    after = scrape_text(
        exposition(
            20, {"parse": 0.02, "features": 0.05, "inference": 0.06, "serialize": 0.002}, 0.15
        )
    )

    means = stage_means(before, after, "/predict")

    assert means == {
        "parse": 1.0,
        "features": 3.0,
        "inference": 3.0,
        "serialize": 0.1,
        "server": 8.0,
        "other": 0.9,
    }
    assert stage_means(before, before, "/predict") is None  # no request in between
    assert stage_means(before, after, "/predict/id") is None  # no such route
    assert stage_means({}, scrape_text("# nothing\n"), "/predict") is None


def test_cpu_per_request_and_memory_of_a_real_process() -> None:
    probe = ProcessProbe({"me": os.getpid(), "gone": 2**22 + 12345})
    before = probe.cpu_seconds()
    with probe.peak_rss() as peaks:
        busy_until = time.process_time() + 0.2
        while time.process_time() < busy_until:
            pass
        block = bytearray(64 * 2**20)  # 64 MiB, touched
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.2)
    after = probe.cpu_seconds()

    assert set(before) == {"me"}  # a pid that does not exist is left out
    per_request = cpu_ms_per_request(before, after, 10)
    assert 15 <= per_request["me"] <= 200  # >= 200 ms of CPU over 10 "requests"
    assert peaks["me"] > 64
    del block
    assert cpu_ms_per_request(before, after, 0) == {}
