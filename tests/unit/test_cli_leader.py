"""`run --leader-elect`: the Lease's settings from flags and the pod's environment."""

from __future__ import annotations

from typing import Any

import pytest

from nodecluster import cli
from nodecluster.controllers import handlers
from nodecluster.controllers.leader import LeaseSettings


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The run_operator calls `run` makes (none starts kopf)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(handlers, "run_operator", lambda **kwargs: calls.append(kwargs))
    for variable in ("POD_NAMESPACE", "POD_NAME", "NODECLUSTER_INSTALLATION_ID"):
        monkeypatch.delenv(variable, raising=False)
    return calls


def test_without_the_flag_there_is_no_election(runs: list[dict[str, Any]]) -> None:
    assert cli.main(["run"]) == 0
    assert runs[0]["lease"] is None


def test_the_lease_is_in_the_pods_namespace_named_by_the_pod(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "nodecluster-system")
    monkeypatch.setenv("POD_NAME", "nodecluster-operator-7d9f-x2k")
    assert cli.main(["run", "--leader-elect", "--lease-name", "nc-prod"]) == 0
    lease: LeaseSettings = runs[0]["lease"]
    assert (lease.name, lease.namespace) == ("nc-prod", "nodecluster-system")
    assert (lease.duration, lease.renew_deadline, lease.retry_period) == (15.0, 10.0, 2.0)
    # The pod's name, and a suffix telling this process from the one before it.
    assert lease.identity.startswith("nodecluster-operator-7d9f-x2k_")
    assert cli.main(["run", "--leader-elect", "--lease-name", "nc-prod"]) == 0
    assert runs[1]["lease"].identity != lease.identity


def test_without_a_namespace_it_says_where_to_give_one(
    runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--leader-elect"]) == 2
    assert "--lease-namespace, or POD_NAMESPACE" in capsys.readouterr().err
    assert runs == []


def test_timings_that_leave_no_margin_are_refused(
    runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--leader-elect", "--lease-namespace", "ns", "--renew-deadline", "20"]
    assert cli.main(argv) == 2
    assert "renew deadline < lease duration" in capsys.readouterr().err
    assert runs == []


def test_peering_and_leader_election_together_are_refused(
    runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--leader-elect", "--lease-namespace", "ns", "--peering", "debug"]
    assert cli.main(argv) == 2
    assert "--peering and --leader-elect do not go together" in capsys.readouterr().err
    assert runs == []
    # Each alone still runs: peering stays for debugging one operator.
    assert cli.main(["run", "--peering", "debug"]) == 0
    assert runs[0]["peering"] == "debug" and runs[0]["lease"] is None
