"""Property-based fuzzing of the gateway from its own OpenAPI schema (schemathesis):
whatever the generated request, the answer is never a 5xx.

Left out: the SSE streams (endless by design), /train and /materialize (each call
starts a pipeline run; their 409 path is covered in test_flows) and /reload (it
rolls the model out; covered in test_api)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration

EXCLUDED = r"^/(events|vehicles/events|pipelines/events|train|materialize|reload)$"


@pytest.fixture
def gateway_schema(stack: Stack) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    return schema.exclude(path_regex=EXCLUDED)


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error], timeout=30)
