"""``vroom migrate`` (also ``python -m vroom_pipelines migrate``, the chart's init step)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ports import free_ports
from vroom_cli.main import app
from vroom_db import make_engine
from vroom_db.migrate import current_revision, head_revision


def test_migrate_brings_a_new_database_to_the_head_and_then_does_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VROOM_DATABASE_URL", database_url)
    runner = CliRunner()
    first = runner.invoke(app, ["migrate", "--state-dir", str(tmp_path / "state")])
    assert first.exit_code == 0, first.output
    assert "none" in first.output
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    again = runner.invoke(app, ["migrate", "--state-dir", str(tmp_path / "state")])
    assert again.exit_code == 0, again.output
    assert "none" not in again.output


def test_an_unreachable_database_is_named_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (port,) = free_ports(1)
    url = f"postgresql+psycopg://vroom:s3cret@127.0.0.1:{port}/vroom"
    monkeypatch.setenv("VROOM_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["migrate", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1
    assert f"the database is unavailable: postgresql+psycopg://vroom:***@127.0.0.1:{port}" in (
        result.output
    )
    assert "s3cret" not in result.output
