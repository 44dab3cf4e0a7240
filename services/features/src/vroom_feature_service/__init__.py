"""Feature service: the model's features on the fly, by vehicle id, and for the fleet.

An HTTP (FastAPI) service on its own port (``VROOM_FEATURE_SERVICE_PORT``, 8082).
The gateway calls it; every feature it returns comes from the one feature
definition in ``feature_repo/`` (``vroom_features``). Endpoints
(details in ``docs/feature-service.md``):

=======  ===============================  ==================================================
POST     /v1/features/compute             raw attributes of 1..1,000 vehicles -> feature matrix
POST     /v1/features/online              1..1,000 vehicle ids -> features from the Feast online
                                          store (Redis); unknown ids listed in ``missing``
GET      /v1/features/offline             every row of the Parquet offline store (held in memory)
GET      /v1/features/offline/{id}        one row of it; 404 when absent
GET      /v1/stores                       offline file, online store and feature-view facts
GET      /healthz                         the process is alive
GET      /readyz                          Redis answers and the feature view is registered
=======  ===============================  ==================================================

Errors are ``{"detail": message}`` with the status of the ``vroom_common.errors`` type
(404 not found, 503 Redis or registry unavailable); a body that breaks a rule gets
FastAPI's 422 naming the field and the rule.

Run it with ``python -m vroom_feature_service``; build it in code with
:func:`vroom_feature_service.app.create_app`.
"""
