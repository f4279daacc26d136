"""The install has one source, the Helm chart: its crds/ are copies of the generated CRDs,
and manifests/base is `helm template` of it (tools/gen-manifests). Both must match what
would be generated now, and the kustomize base must build into the same objects.

Helm is built with the local control plane (tools/build-control-plane), which tools/test
always builds; there a missing helm fails the tests that render the chart, elsewhere they
skip (tests/unit/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import chart  # noqa: E402

HELM = chart.find_helm()
KUBECTL = chart.find_tool("kubectl")
REGENERATE = "Run tools/gen-manifests"
needs_helm = pytest.mark.needs_tool("helm")


def identities(docs: list[Any]) -> set[tuple[str, str, str]]:
    return {
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))
        for d in docs
        if d is not None
    }


def test_the_charts_crds_are_the_generated_crds() -> None:
    assert chart.chart_crd_drift() == [], REGENERATE
    names = {p.name for p in chart.CHART_CRDS.glob("*.yaml")}
    assert names == {p.name for p in chart.MODEL_CRDS.glob("*.yaml")}


def test_a_stale_crd_copy_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = tmp_path / "crds"
    shutil.copytree(chart.CHART_CRDS, copies)
    victim = next(p for p in copies.glob("nodecluster.io_*.yaml"))
    victim.write_text(victim.read_text().replace("description:", "description: old", 1))
    (copies / "nodecluster.io_gone.yaml").write_text("{}\n")
    monkeypatch.setattr(chart, "CHART_CRDS", copies)

    problems = chart.chart_crd_drift()

    assert any(victim.name in p and "differs" in p for p in problems), problems
    assert any("nodecluster.io_gone.yaml is not in crds/" in p for p in problems), problems


@needs_helm
def test_manifests_base_is_what_the_chart_renders() -> None:
    assert HELM is not None
    assert chart.base_drift(HELM) == [], REGENERATE


@needs_helm
def test_an_edit_to_manifests_base_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert HELM is not None
    base = tmp_path / "base"
    shutil.copytree(chart.BASE, base)
    deployment = base / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("readOnlyRootFilesystem: true", "x: 1"))
    (base / "extra.yaml").write_text("kind: ConfigMap\n")
    monkeypatch.setattr(chart, "BASE", base)

    problems = chart.base_drift(HELM)

    assert f"{base}/deployment.yaml differs" in problems
    assert f"{base}/extra.yaml is not generated" in problems


@pytest.mark.needs_tool("helm", "kubectl")
def test_kustomize_builds_the_base_into_the_charts_objects() -> None:
    assert HELM is not None
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(chart.BASE)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    rendered = chart.render(HELM, *chart.BASE_VALUES)

    objects = list(yaml.safe_load_all(built.stdout))

    assert identities(objects) == identities(list(yaml.safe_load_all(rendered)))
    kinds = {kind for kind, _, _ in identities(objects)}
    assert kinds >= {"Namespace", "CustomResourceDefinition", "ServiceAccount", "Deployment"}
    assert kinds >= {"ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels, f"{obj['kind']} claims to be managed by Helm"
        assert labels.get("app.kubernetes.io/managed-by") != "Helm"
