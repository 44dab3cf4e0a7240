"""KServe model server for the reservation model.

Locally one server hosts two models, the champion and the progressive rollout's
candidate (``<model>-candidate``), so a gateway can split and mirror traffic between
them; on a cluster each InferenceService serves one.

``model`` is the ``kserve.Model`` (tensor and output checks, inference, hot reload,
unload); ``loading`` fetches and checks a model version (from a directory or an MLflow
registry alias); ``server`` wires the models into ``kserve.ModelServer`` (repository
extension, metadata, error mapping, promotion watcher); ``__main__`` is the entry point.
"""
