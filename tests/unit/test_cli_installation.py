"""`run`'s installation id and name, from flags or the environment."""

from __future__ import annotations

from typing import Any

import pytest

from nodecluster import cli
from nodecluster.controllers import handlers


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The run_operator calls `run` makes (none starts kopf)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(handlers, "run_operator", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("NODECLUSTER_INSTALLATION_ID", raising=False)
    monkeypatch.delenv("NODECLUSTER_INSTALLATION_NAME", raising=False)
    return calls


def installation(calls: list[dict[str, Any]]) -> tuple[str | None, str]:
    [call] = calls
    return call["installation_id"], call["installation_name"]


def test_without_either_the_name_is_default(runs: list[dict[str, Any]]) -> None:
    assert cli.main(["run"]) == 0
    assert installation(runs) == (None, "default")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--installation-id", "prod-eu"], {}, ("prod-eu", "default")),
        (["--installation-name", "ops.nc"], {}, (None, "ops.nc")),
        ([], {"NODECLUSTER_INSTALLATION_ID": "prod-eu"}, ("prod-eu", "default")),
        ([], {"NODECLUSTER_INSTALLATION_NAME": "ops.nc"}, (None, "ops.nc")),
    ],
)
def test_one_of_them_is_taken_from_a_flag_or_the_environment(
    runs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    expected: tuple[str | None, str],
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert cli.main(["run", *argv]) == 0
    assert installation(runs) == expected


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--installation-name", "ops.nc"], {"NODECLUSTER_INSTALLATION_ID": "legacy"}),
        (["--installation-id", "legacy"], {"NODECLUSTER_INSTALLATION_NAME": "ops.nc"}),
        ([], {"NODECLUSTER_INSTALLATION_ID": "legacy", "NODECLUSTER_INSTALLATION_NAME": "a"}),
    ],
)
def test_an_id_and_a_name_together_are_refused_whichever_way_they_come(
    runs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)

    assert cli.main(["run", *argv]) == 2

    assert runs == []
    assert "not both" in capsys.readouterr().err


def test_an_invalid_id_in_the_environment_is_refused_by_name(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODECLUSTER_INSTALLATION_ID", "-bad-")
    with pytest.raises(SystemExit, match="NODECLUSTER_INSTALLATION_ID"):
        cli.main(["run"])
    assert runs == []
