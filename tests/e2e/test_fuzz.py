"""Property-based fuzzing of the gateway from its own OpenAPI schema (schemathesis):
whatever the generated request, the answer is never a 5xx.

Each operation of the live ``/openapi.json`` gets its own Hypothesis run (the
schemathesis pytest plugin's lazy fixtures do not work with this pytest, so the loop
is explicit). Left out: the SSE streams (endless by design), /train and /materialize
(each call starts a pipeline run; their 409 path is covered in test_flows), /reload
(it rolls the model out; covered in test_api) and the rollout's POSTs (they start,
abort and promote rollouts; covered in test_rollouts) are fuzzed only without the API
key, which refuses them before they do anything."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration

#: Endless by design.
STREAMS = r"^/(events|vehicles/events|pipelines/events|rollout/events)$"
#: With the key these would run pipelines, roll models out or change rollouts.
WITH_SIDE_EFFECTS = r"^/(train|materialize|reload)$"
#: Generated requests per operation.
EXAMPLES = 30


def fuzz(stack: Stack, schema: Any, headers: dict[str, str]) -> list[str]:
    """Every operation of ``schema`` with generated requests: never a 5xx."""
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error], headers=headers, timeout=30)

        no_5xx()
        fuzzed.append(operation.label)
    return fuzzed


def test_no_server_errors_with_credentials(stack: Stack) -> None:
    schema = (
        schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
        .exclude(path_regex=STREAMS)
        .exclude(path_regex=WITH_SIDE_EFFECTS)
        .exclude(method="POST", path_regex=r"^/rollout")
    )
    fuzzed = fuzz(stack, schema, {"Authorization": f"Bearer {stack.api_key}"})
    assert len(fuzzed) >= 14  # the 19 endpoints minus the 6 excluded, plus GET /rollout
    assert "POST /predict" in fuzzed
    assert "DELETE /vehicles/{vehicle_id}" in fuzzed
    assert "GET /rollout" in fuzzed


def test_no_server_errors_without_credentials(stack: Stack) -> None:
    """Every operation but the streams, the costly ones included: without a key they
    are refused before they do anything."""
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json").exclude(path_regex=STREAMS)
    fuzzed = fuzz(stack, schema, {})
    assert {"POST /train", "POST /reload", "POST /rollout/promote", "POST /vehicles"} <= set(fuzzed)
    with stack.client(key=None) as anonymous:
        assert anonymous.post("/train").status_code == 401
