"""Property-based fuzzing of the gateway from its own OpenAPI schema (schemathesis):
whatever the generated request, the answer is never a 5xx.

Each operation of the live ``/openapi.json`` gets its own Hypothesis run (the
schemathesis pytest plugin's lazy fixtures do not work with this pytest, so the loop
is explicit). Left out: the SSE streams (endless by design), /train and /materialize
(each call starts a pipeline run; their 409 path is covered in test_flows), /reload
(it rolls the model out; covered in test_api) and the rollout's POSTs (they start,
abort and promote rollouts; covered in test_rollouts)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration

EXCLUDED = r"^/(events|vehicles/events|pipelines/events|rollout/events|train|materialize|reload)$"
#: Generated requests per operation.
EXAMPLES = 30


def test_no_server_errors(stack: Stack) -> None:
    schema = (
        schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
        .exclude(path_regex=EXCLUDED)
        .exclude(method="POST", path_regex=r"^/rollout")
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # the 19 endpoints minus the 6 excluded, plus GET /rollout
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
            case.call_and_validate(checks=[not_a_server_error], timeout=30)

        no_5xx()
        fuzzed.append(operation.label)
    assert "POST /predict" in fuzzed
    assert "DELETE /vehicles/{vehicle_id}" in fuzzed
    assert "GET /rollout" in fuzzed
