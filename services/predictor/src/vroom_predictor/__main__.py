"""``python -m vroom_predictor``: the KServe model server for the reservation model.

On a cluster KServe's storage initializer puts the model at ``/mnt/models`` and the
server runs with ``--model_dir /mnt/models``: one model, named ``--model_name`` (a
promotion rolls new pods; a rollout candidate is an InferenceService of its own).
Locally one process serves two models from the MLflow registry: the champion
(``models:/<name>@champion``, hot-reloaded on promotion) and the progressive
rollout's candidate (``<name>-candidate``, ``models:/<name>@rollout``, loaded and
unloaded through the repository extension by the rollout), so the gateway can split
and mirror traffic between them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kserve import ModelServer
from kserve.logging import KSERVE_LOGGER_NAME
from kserve.model_server import app as rest_app
from kserve.model_server import parser as kserve_parser

from vroom_common.http import freeze_heap
from vroom_common.logs import configure_logging
from vroom_common.settings import Settings
from vroom_common.tracing import configure_tracing, instrument_grpc_server
from vroom_predictor.drift import install_monitoring
from vroom_predictor.loading import DirectorySource, ModelSource, RegistrySource
from vroom_predictor.model import ReservationModel
from vroom_predictor.server import (
    ReloadingRepository,
    RepositoryExtension,
    VersionedDataPlane,
    add_error_handlers,
    model_loaded_publisher,
    watch_promotions,
)
from vroom_predictor.settings import get_predictor_settings
from vroom_registry import ALIAS_CHAMPION, ALIAS_ROLLOUT, candidate_name


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """KServe's model-server flags plus ours; defaults come from the settings."""
    parser = argparse.ArgumentParser(
        prog="python -m vroom_predictor", parents=[kserve_parser], conflict_handler="resolve"
    )
    parser.add_argument(
        "--model_dir",
        type=Path,
        default=None,
        help="Serve the model in this directory (on a cluster: /mnt/models). "
        "Default: the MLflow registry's champion, hot-reloaded on promotion, and beside "
        "it the rollout candidate (<model_name>-candidate, alias 'rollout').",
    )
    parser.add_argument("--mlflow_uri", default=settings.mlflow_uri, help="MLflow tracking URI.")
    parser.add_argument(
        "--alias",
        default=ALIAS_CHAMPION,
        help="Registry alias served as --model_name (the candidate always serves 'rollout').",
    )
    parser.add_argument(
        "--redis_url",
        default=settings.redis_url,
        help="Events: model-promoted triggers a reload, model-loaded is published. "
        "Empty to disable.",
    )
    parser.set_defaults(
        model_name=settings.model_name,
        http_port=settings.predictor_http_port,
        grpc_port=settings.predictor_grpc_port,
        workers=1,  # the loaded model and its reloads live in one process
    )
    return parser


def _drop_per_call_logs(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("grpc method:")


def main(argv: list[str] | None = None) -> None:
    settings = get_predictor_settings()
    args = build_parser(settings).parse_args(argv)
    configure_logging(settings.log_format, settings.log_level)
    if configure_tracing("vroom-predictor"):
        instrument_grpc_server()  # before KServe makes its gRPC server

    source: ModelSource
    cache = settings.state_dir / "predictor"
    if args.model_dir is not None:
        source = DirectorySource(args.model_dir)
    else:
        source = RegistrySource(args.mlflow_uri, args.model_name, args.alias, cache / "models")
    on_swap = (
        model_loaded_publisher(settings, args.redis_url, args.model_name)
        if args.redis_url
        else None
    )
    window, min_rows = settings.drift_window_rows, settings.drift_min_rows
    champion = ReservationModel(
        args.model_name, source, on_swap, drift_window=window, drift_min_rows=min_rows
    )
    models = [champion]
    if args.model_dir is None:
        # Its own cache: the two models may download the same version at the same time.
        rollout = RegistrySource(
            args.mlflow_uri, args.model_name, ALIAS_ROLLOUT, cache / "candidate-models"
        )
        # Every candidate inference in a worker thread: a slow candidate must not stall
        # the champion's requests on the shared event loop (its latency is judged alone).
        candidate = ReservationModel(
            candidate_name(args.model_name),
            rollout,
            optional=True,
            thread_rows=1,
            drift_window=window,
            drift_min_rows=min_rows,
        )
        models.append(candidate)
    for model in models:
        model.load_initial()

    repository = ReloadingRepository(models)
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=args.enable_grpc,
        registered_models=repository,
    )
    # KServe logs every gRPC call at INFO ("grpc method: ..."): a log line per
    # prediction costs more than the inference. Drop those, keep the rest.
    logging.getLogger(KSERVE_LOGGER_NAME).addFilter(_drop_per_call_logs)
    server.dataplane = VersionedDataPlane(repository)
    server.model_repository_extension = RepositoryExtension(repository)
    add_error_handlers(rest_app)
    install_monitoring(rest_app, models)
    if args.redis_url and args.model_dir is None:
        server.servers.append(watch_promotions(champion, settings, args.redis_url))
    freeze_heap()  # the models are loaded: what is alive now lives as long as the server
    # The models are registered through the repository: start() with no list, so a
    # server without a champion yet comes up (not ready) instead of refusing to start.
    server.start([])


if __name__ == "__main__":
    main()
