"""KServe model server for the reservation model.

``model`` is the ``kserve.Model`` (tensor checks, inference, hot reload); ``loading``
fetches and checks a model version (from a directory or the MLflow registry);
``server`` wires it into ``kserve.ModelServer`` (repository extension, metadata,
promotion watcher); ``__main__`` is the entry point.
"""
