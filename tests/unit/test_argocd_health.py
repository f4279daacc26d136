"""The Argo CD health check of NodeCluster, branch by branch, on NodeClusters shaped as the
operator writes them. tests/e2e/test_gitops.py runs it on real ones; this covers the
states a real cluster passes through too quickly, or too rarely, to catch there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from argocd import Health, nodecluster_health  # noqa: E402


def cond(ctype: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


def nodecluster(
    state: str | None,
    *conditions: dict[str, Any],
    generation: int = 3,
    observed: int | None = 3,
    paused: bool = False,
    message: str = "",
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions), "message": message}
    if state is not None:
        status["state"] = state
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": "workers", "namespace": "batch", "generation": generation},
        "spec": {"targetNodes": 3, "paused": paused},
        "status": status,
    }


CONVERGED = (
    cond("Ready", True, "Converged"),
    cond("Reconciling", False, "Converged"),
    cond("Stalled", False, "Progressing"),
    cond("Degraded", False, "AsExpected"),
)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {"metadata": {"generation": 1}, "spec": {}},
            Health("Progressing", "Waiting for the operator to observe the NodeCluster"),
            id="no-status-yet",
        ),
        pytest.param(
            nodecluster("Deployed", *CONVERGED, generation=4, observed=3),
            Health("Progressing", "Waiting for the operator to observe generation 4 (observed 3)"),
            id="generation-not-observed",
        ),
        pytest.param(
            nodecluster("Deployed", *CONVERGED, message="3 nodes ready"),
            Health("Healthy", "Deployed: 3 nodes ready"),
            id="deployed",
        ),
        pytest.param(
            nodecluster("Stopped", *CONVERGED, message="3 nodes stopped"),
            Health("Healthy", "Stopped: 3 nodes stopped"),
            id="stopped-as-declared",
        ),
        pytest.param(
            nodecluster(
                "Scaling",
                cond("Ready", False, "Scaling"),
                cond("Reconciling", True, "Scaling", "3 nodes, 2 ready, target 5"),
            ),
            Health("Progressing", "Scaling: 3 nodes, 2 ready, target 5"),
            id="scaling",
        ),
        pytest.param(
            nodecluster(
                "Init",
                cond("Ready", False, "Init"),
                cond("Stalled", True, "QuotaExceeded", "quota of 10 nodes reached"),
            ),
            Health("Degraded", "Stalled: QuotaExceeded: quota of 10 nodes reached"),
            id="stalled",
        ),
        pytest.param(
            nodecluster(
                "PartlyDeployed",
                cond("Ready", False),
                cond("Degraded", True, "UnhealthyNodes", "unhealthy: workers-a"),
            ),
            Health("Degraded", "PartlyDeployed: UnhealthyNodes: unhealthy: workers-a"),
            id="degraded",
        ),
        pytest.param(
            nodecluster("Error", cond("Ready", False), message="provider down"),
            Health("Degraded", "Error: provider down"),
            id="error-state",
        ),
        pytest.param(
            nodecluster(
                "Scaling",
                cond("Ready", False, "ChangesHeldBack", "Launch: 2 nodes not created"),
                cond("Reconciling", False, "ChangesHeldBack", "Launch: 2 nodes not created"),
                cond(
                    "Suspended",
                    True,
                    "ChangesHeldBack",
                    "Launch suspended; held back: Launch: 2 nodes not created",
                ),
            ),
            Health(
                "Suspended",
                "Scaling: ChangesHeldBack: "
                "Launch suspended; held back: Launch: 2 nodes not created",
            ),
            id="a-suspended-process-holds-a-change-back",
        ),
        pytest.param(
            nodecluster(
                "Deployed",
                *CONVERGED,
                cond(
                    "Suspended", True, "ProcessesSuspended", "Launch suspended; nothing held back"
                ),
                message="3 nodes ready",
            ),
            Health("Healthy", "Deployed: 3 nodes ready"),
            id="suspended-with-nothing-held-back",
        ),
        pytest.param(
            nodecluster(
                "PartlyDeployed",
                cond("Ready", False),
                cond("Degraded", True, "UnhealthyNodes", "unhealthy: workers-a"),
                cond("Suspended", True, "ChangesHeldBack", "Remediate: 1 unhealthy nodes"),
            ),
            Health("Degraded", "PartlyDeployed: UnhealthyNodes: unhealthy: workers-a"),
            id="degraded-wins-over-held-back",
        ),
        pytest.param(
            nodecluster("Deployed", *CONVERGED, paused=True, generation=5, observed=4),
            Health("Suspended", "Reconciliation is paused (spec.paused); last state Deployed"),
            id="paused-wins-over-everything",
        ),
    ],
)
def test_health(obj: dict[str, Any], expected: Health) -> None:
    assert nodecluster_health(obj) == expected


def test_an_unknown_health_status_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "broken.lua"
    script.write_text('return {status = "Fine", message = ""}\n')

    with pytest.raises(ValueError, match="unknown health status"):
        nodecluster_health({"metadata": {}}, script)
