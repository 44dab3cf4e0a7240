"""``GET /monitoring``: drift of the live inputs of every served model."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_gateway.clients.monitoring import drift_reports
from vroom_gateway.deps import SettingsDep
from vroom_gateway.schemas import ModelDrift, Monitoring

router = APIRouter(tags=["monitoring"])


@router.get("/monitoring")
async def monitoring(settings: SettingsDep) -> Monitoring:
    """PSI of each feature and of the predictions, live window against the training
    distribution saved with the model, with both distributions bin by bin; ``drifted``
    names those above the alert threshold. 503 when the predictor does not answer."""
    reports = await drift_reports(
        settings.predictor_url, settings.candidate_predictor_url, settings.request_timeout_s
    )
    models = [ModelDrift.model_validate(report) for report in reports]
    threshold = settings.drift_alert_psi
    drifted = [
        f"{m.model} v{m.version}: {feature}"
        for m in models
        for feature, score in (m.psi or {}).items()
        if score > threshold
    ]
    return Monitoring(threshold=threshold, drifted=drifted, models=models)
