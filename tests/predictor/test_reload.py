"""Hot reload on a running predictor: under load, on promotion, with a broken artifact."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import redis

from tests.conftest import Champion
from tests.predictor.conftest import Served, predictor_settings, start_predictor
from tests.predictor.test_server import grpc_infer
from vroom_cli.stack import down
from vroom_common import events
from vroom_common.events import ModelLoaded, Stream
from vroom_common.settings import Settings
from vroom_features.contract import INPUT_NAME, N_FEATURES, ONNX_FILE
from vroom_predictor.loading import PROBE_ROW

pytestmark = pytest.mark.integration

ROW = PROBE_ROW[0].tolist()


def body(rows: int = 1) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": INPUT_NAME,
                "datatype": "FP32",
                "shape": [rows, N_FEATURES],
                "data": ROW * rows,
            }
        ]
    }


class Load:
    """Client threads sending requests back to back until stopped; every outcome counted."""

    def __init__(self, served: Served, streams: int = 4) -> None:
        self.url = f"{served.rest}/v2/models/{served.settings.model_name}/infer"
        self.stop = threading.Event()
        self.versions: list[str] = []
        self.by_stream: dict[int, list[int]] = {}
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(streams)]

    def run(self, stream: int) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url, json=body(1 + stream * 50))
                    ok = response.status_code == 200
                    outcome = response.json()["model_version"] if ok else response.text
                except httpx.HTTPError as exc:
                    ok, outcome = False, repr(exc)
                with self.lock:
                    (self.versions if ok else self.failures).append(outcome)
                    if ok:
                        self.by_stream.setdefault(stream, []).append(int(outcome))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_three_promotions_under_load_drop_no_request(served: Served) -> None:
    with Load(served) as load:
        time.sleep(1)
        promoted = []
        for _ in range(3):
            version = served.promote_new_version()
            served.wait_version(version)
            promoted.append(version)
            time.sleep(1)  # requests keep flowing on the new version

    assert load.failures == []
    seen = Counter(load.versions)
    assert len(load.versions) > 100, "the load generator barely ran"
    assert all(seen[v] > 0 for v in promoted), seen
    # The swap is atomic: once a stream saw a newer version it never sees an older one.
    for stream, versions in load.by_stream.items():
        assert versions == sorted(versions), f"stream {stream} went back a version"
    print(f"{len(load.versions)} requests, versions seen: {dict(seen)}")


def test_each_swap_publishes_model_loaded(served: Served) -> None:
    client = redis.Redis.from_url(served.settings.redis_url)
    version = served.promote_new_version()
    served.wait_version(version)
    deadline = time.monotonic() + 10
    loaded: list[ModelLoaded] = []
    while time.monotonic() < deadline and not loaded:
        parsed = [events.decode(fields) for _id, fields in client.xrange(Stream.MODELS)]
        loaded = [
            e
            for e in parsed
            if isinstance(e, ModelLoaded)
            and e.model_name == served.settings.model_name
            and e.version == version
        ]
        time.sleep(0.1)
    assert len(loaded) == 1
    assert loaded[0].run_id


def test_a_broken_artifact_keeps_the_old_model_serving_and_says_why(
    served: Served, tmp_path: Path
) -> None:
    name = served.settings.model_name
    before = httpx.get(f"{served.rest}/v2/models/{name}", timeout=5).json()["versions"]
    broken = tmp_path / "broken"
    shutil.copytree(served.model_dir, broken)
    (broken / ONNX_FILE).write_bytes(b"this is not an onnx model")
    served.promote_new_version(broken)  # the watcher's reload fails

    # Asking for the reload explicitly surfaces the error ...
    response = httpx.post(f"{served.rest}/v2/repository/models/{name}/load", timeout=30)
    assert response.status_code == 503
    assert "is not a loadable ONNX model" in response.json()["error"]
    # ... while the previous version keeps answering.
    infer = httpx.post(f"{served.rest}/v2/models/{name}/infer", json=body(), timeout=5)
    assert infer.status_code == 200
    assert [infer.json()["model_version"]] == before

    # A good version promoted afterwards is picked up again.
    version = served.promote_new_version()
    served.wait_version(version)


def test_without_a_champion_the_server_is_up_but_not_ready_until_a_promotion(
    champion: Champion, stack_settings: Settings, tmp_path: Path, served: Served
) -> None:
    settings = predictor_settings(stack_settings, tmp_path / "state")
    empty = Served(settings, served.model_dir)
    start_predictor(settings)
    try:
        rest = empty.rest
        name = settings.model_name
        assert httpx.get(f"{rest}/v2/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{rest}/v2/models/{name}/ready", timeout=5).status_code == 503
        response = httpx.post(f"{rest}/v2/models/{name}/infer", json=body(), timeout=5)
        assert response.status_code == 503
        assert "not ready" in response.json()["error"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            grpc_infer(empty, np.array([ROW], dtype=np.float32))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in (caught.value.details() or "")

        version = empty.promote_new_version()
        empty.wait_version(version)
        response = httpx.post(f"{rest}/v2/models/{name}/infer", json=body(), timeout=5)
        assert response.status_code == 200
        assert np.isfinite(response.json()["outputs"][0]["data"][0])
    finally:
        down(settings)
