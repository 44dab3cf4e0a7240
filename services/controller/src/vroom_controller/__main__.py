"""``python -m vroom_controller``: advance the rollouts of the model until SIGTERM/SIGINT.

``--probe`` checks the heartbeat instead (exit 0 fresh, 1 stale or missing, the reason
on stdout): the liveness check of a Kubernetes exec probe and of the local stack.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

import redis
import structlog

from vroom_common import events
from vroom_common.events import ModelPromoted
from vroom_common.logs import configure_logging
from vroom_common.redis_clients import redis_client
from vroom_controller.health import DEFAULT_MAX_AGE_S, beat, heartbeat_path, probe
from vroom_rollout.settings import RolloutSettings, get_rollout_settings

log = structlog.get_logger(__name__)

#: (connect, read) bound of every Redis call: blocking reads use shorter blocks.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vroom_controller",
        description="Advance progressive rollouts of the model (one lease holder at a time).",
    )
    parser.add_argument("--probe", action="store_true", help="Check the heartbeat and exit.")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_S,
        help="With --probe: the oldest heartbeat (seconds) that counts as alive.",
    )
    return parser


def run(settings: RolloutSettings, stop: threading.Event) -> None:
    """The controller loop for ``settings`` until ``stop`` is set."""
    # Heavy imports (MLflow, the Kubernetes client) after the signal handlers are in.
    from vroom_rollout.progressive.controller import Controller  # noqa: PLC0415
    from vroom_rollout.progressive.deployers import make_deployer  # noqa: PLC0415
    from vroom_rollout.progressive.registry import RolloutRegistry  # noqa: PLC0415
    from vroom_rollout.progressive.store import RolloutStore  # noqa: PLC0415

    client = redis_client(settings)

    def announce(event: ModelPromoted) -> None:
        try:
            events.publish(client, event, settings.stream_maxlen)
        except redis.RedisError as exc:  # the predictor is also told directly
            log.warning("model-promoted event not published", error=str(exc))

    store = RolloutStore(client, settings.model_name, settings.stream_maxlen)
    controller = Controller(
        settings,
        store,
        make_deployer(settings),
        RolloutRegistry(settings),
        announce_model=announce,
    )
    path = heartbeat_path(settings.state_dir)
    log.info(
        "rollout controller started",
        owner=controller.owner,
        model_name=settings.model_name,
        backend=settings.rollout_backend,
    )
    try:
        controller.run(stop, on_tick=lambda: beat(path, controller.lease.held.is_set()))
    finally:
        client.close()
        log.info("rollout controller stopped", owner=controller.owner)


def main(argv: list[str] | None = None) -> int:
    settings = get_rollout_settings()
    configure_logging(settings.log_format, settings.log_level)
    args = build_parser().parse_args(argv)
    if args.probe:
        healthy, reason = probe(heartbeat_path(settings.state_dir), args.max_age)
        print(reason)  # noqa: T201 - the probe's answer is its output
        return 0 if healthy else 1

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the loop finishes its tick, releases the lease and exits

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    run(settings, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
