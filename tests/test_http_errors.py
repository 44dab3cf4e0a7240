"""The one parser of the error bodies of the services we call."""

from __future__ import annotations

import pytest

from vroom_common.http_errors import QUOTED_CHARS, error_message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"detail": "vehicle 7 not found"}', "vehicle 7 not found"),  # FastAPI
        (
            b'{"error": "Model with name vroom does not exist."}',
            "Model with name vroom does not exist.",
        ),
        (b'{"title": "Conflict", "detail": "DAG run exists"}', "DAG run exists"),  # Airflow
        (b'{"title": "Unauthorized", "detail": ""}', "Unauthorized"),
        ('{"message": "over quota"}', "over quota"),
        (b"<html>502 Bad Gateway</html>\n", "<html>502 Bad Gateway</html>"),
        (b'["not", "an", "object"]', '["not", "an", "object"]'),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
    ],
)
def test_the_services_own_message_is_taken(body: bytes | str, expected: str) -> None:
    assert error_message(body, "Bad Gateway") == expected


def test_an_empty_body_falls_back_and_a_long_one_is_cut() -> None:
    assert error_message(b"  ", "Service Unavailable") == "Service Unavailable"
    assert error_message("x" * 2000) == "x" * QUOTED_CHARS
