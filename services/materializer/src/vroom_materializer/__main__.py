"""``python -m vroom_materializer``: consume vehicle events until SIGTERM/SIGINT, and
drain the prediction log to Parquet in a thread beside it.

``--probe`` checks the heartbeat instead (exit 0 fresh, 1 stale or missing, with the
reason on stdout): the liveness check of a Kubernetes exec probe and the local stack.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import structlog

from vroom_common.logs import configure_logging
from vroom_common.settings import get_settings
from vroom_materializer.health import heartbeat_path, probe
from vroom_materializer.options import MaterializerOptions

log = structlog.get_logger(__name__)


def build_parser(options: MaterializerOptions) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vroom_materializer",
        description="Write the online features of saved vehicles (Redis stream consumer).",
    )
    parser.add_argument(
        "--consumer",
        default=options.consumer,
        help="Consumer name in the group; keep it stable across restarts "
        "(default: VROOM_MATERIALIZER_CONSUMER, else the host name).",
    )
    parser.add_argument(
        "--min-idle-ms",
        type=int,
        default=options.min_idle_ms,
        help="Reclaim other consumers' entries pending longer than this.",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="Check the heartbeat of the materializer of this state dir and exit.",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=options.heartbeat_max_age_s,
        help="With --probe: the oldest heartbeat (seconds) that counts as alive.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    options = MaterializerOptions()
    args = build_parser(options).parse_args(argv)

    if args.probe:
        result = probe(heartbeat_path(settings.state_dir), args.max_age)
        print(result.reason)  # noqa: T201 - the probe's answer is its output
        return 0 if result.healthy else 1

    stop_signals: list[str] = []
    stopper: list[Callable[[], None]] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # No logging here: a handler interrupting a log write would re-enter it.
        if stop_signals:  # a second signal: stop now; unacknowledged work stays pending
            raise SystemExit(128 + signum)
        stop_signals.append(signal.Signals(signum).name)
        for stop in stopper:
            stop()

    # Installed before the slow imports, so a SIGTERM at any point is a clean exit 0.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # Imported here: Feast takes seconds to import, and the probe must stay quick.
    from vroom_materializer.consumer import Materializer  # noqa: PLC0415
    from vroom_materializer.prediction_log import PredictionLogDrain  # noqa: PLC0415

    # Built again so the flags are validated like the environment (other fields: from it).
    options = MaterializerOptions(consumer=args.consumer, min_idle_ms=args.min_idle_ms)
    materializer = Materializer(settings, options)
    drain = PredictionLogDrain(settings, options)
    stopper.extend([materializer.stop, drain.stop])
    if stop_signals:
        materializer.stop()
        drain.stop()
    drainer = threading.Thread(target=drain.run, name="prediction-log", daemon=True)
    drainer.start()
    try:
        materializer.run()
    except Exception:
        log.exception("materializer failed")
        return 1
    finally:
        drain.stop()
        drainer.join(timeout=15)
    if stop_signals:
        log.info("shut down on signal", signal=stop_signals[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
