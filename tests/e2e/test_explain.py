"""`kubectl explain` prints what the CRDs say, as the API server publishes them (OpenAPI v3):
an object field reads as what its model decides, not as a restatement of its name (the unit
tests hold every description to that; this proves the text reaches a person)."""

from __future__ import annotations

from kube import Kube, wait_for

from nodecluster.api.crds import all_crds


def _said(text: str) -> str:
    return " ".join(text.split())  # kubectl wraps descriptions to the terminal's width


def test_kubectl_explain_says_what_the_deletion_policy_decides(kube: Kube) -> None:
    (nodecluster,) = (d for d in all_crds() if d["spec"]["names"]["kind"] == "NodeCluster")
    schema = nodecluster["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    policies = schema["properties"]["spec"]["properties"]["policies"]["properties"]
    expected = _said(policies["deletion"]["description"])
    assert expected.startswith("Which nodes go first when the cluster shrinks")

    def explained() -> str | None:
        # The API server publishes a new CRD's schema shortly after it is established.
        proc = kube.kubectl("explain", "nodecluster.spec.policies.deletion", check=False)
        return _said(proc.stdout) if proc.returncode == 0 else None

    out = wait_for("kubectl explain nodecluster.spec.policies.deletion", explained)
    assert expected in out, out
    assert "Deletion policy." not in out
    assert "gracePeriodSeconds" in out  # and its fields, each described in turn
