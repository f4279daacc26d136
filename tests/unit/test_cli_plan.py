"""`nodecluster-operator plan`: exit statuses for CI (0 no change, 2 changes, 1 error), the
JSON document as documented, and errors a person understands, never a traceback.

The API is the in-memory FakeKube, handed to the command in place of the real client;
the errors before any API call (the file, the spec, the usage) run the real command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecluster import cli_plan
from nodecluster.api.nodecluster import NodeProfile
from nodecluster.cli import main
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, NODEPROVIDERS
from nodecluster.controllers.world import profile_hash
from nodecluster.testing import FakeKube

NS = "team"
SPEC: dict[str, Any] = {
    "providerRef": {"name": "sim"},
    "profile": {"machineType": "small"},
    "targetNodes": 2,
    "policies": {
        "deletion": {"criteria": "OldestFirst"},
        "placement": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]},
    },
}


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {**SPEC, **spec},
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    """A cluster of two ready nodes, served to the command in place of the API server."""
    fake = FakeKube(seed=1)
    fake.add(
        NODEPROVIDERS,
        {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeProvider",
            "metadata": {"name": "sim"},
            "spec": {"driver": "simulator"},
        },
    )
    fake.add(NODECLUSTERS, manifest())
    phash = profile_hash(NodeProfile.model_validate(SPEC["profile"]))
    for i, zone in enumerate(("zone-a", "zone-b")):
        fake.add(
            CLUSTERNODES,
            {
                "apiVersion": "nodecluster.io/v1alpha1",
                "kind": "ClusterNode",
                "metadata": {
                    "name": f"web-n{i}",
                    "namespace": NS,
                    "creationTimestamp": f"2026-01-0{i + 1}T00:00:00Z",
                },
                "spec": {
                    "clusterName": "web",
                    "providerRef": {"name": "sim"},
                    "profile": SPEC["profile"],
                    "profileHash": phash,
                    "zone": zone,
                },
                "status": {"state": "Running", "ready": True, "providerId": f"sim://{i}"},
            },
        )

    async def connect(cls: Any, *args: Any, **kwargs: Any) -> FakeKube:
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))
    return fake


def write(tmp_path: Path, doc: Any, name: str = "changed.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(doc if isinstance(doc, list) else [doc]))
    return str(path)


def plan(*args: str) -> int:
    return main(["plan", "--kubeconfig", "/nonexistent", *args])


def test_no_change_exits_0_and_says_so(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan("-f", write(tmp_path, manifest())) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Replaces existing machines: no")
    assert "spec: unchanged" in out
    assert "Plan: no changes (exit status 0)." in out


def test_a_scale_out_exits_2_with_the_zones_and_only_reads(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan("-f", write(tmp_path, manifest(targetNodes=4))) == 2
    out = capsys.readouterr().out
    assert "targetNodes: 2 -> 4" in out
    assert "  zone-a: 1 -> 2 nodes\n    + 1 new node\n" in out
    assert "  zone-b: 1 -> 2 nodes\n    + 1 new node\n" in out
    assert "Plan: changes (exit status 2)." in out
    assert {c.verb for c in fake.calls} <= {"get", "list"}


def test_the_json_document_has_exactly_the_documented_keys(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = manifest(targetNodes=1, profile={"machineType": "large"})
    assert plan("-f", write(tmp_path, changed), "-o", "json") == 2
    doc = json.loads(capsys.readouterr().out)
    documented = re.findall(r"^    (\w+) +\S", cli_plan.__doc__ or "", re.MULTILINE)
    assert set(doc) == {"kind", "version", *documented}
    assert (doc["kind"], doc["version"]) == ("NodeClusterPlan", 1)
    assert doc["replacesMachines"] is True
    assert doc["nodes"] == {
        "before": 2,
        "after": 1,
        "desired": 1,
        "warmBefore": 0,
        "warmAfter": 0,
    }
    assert [d["node"] for d in doc["deletes"]] == ["web-n0", "web-n1"]
    assert {d["reason"] for d in doc["deletes"]} <= {"Rollout", "ScaleIn"}
    assert doc["creates"] == 1
    assert [c["path"] for c in doc["specChanges"]] == ["profile.machineType", "targetNodes"]
    assert set(doc["zones"][0]) == {
        "zone",
        "before",
        "after",
        "creates",
        "warmCreates",
        "deletes",
        "powerChanges",
        "reboots",
        "moves",
    }


def test_the_namespace_comes_from_the_manifest_or_the_flag_and_must_agree(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = manifest()
    del bare["metadata"]["namespace"]
    assert plan("-f", write(tmp_path, bare), "-n", NS) == 0
    assert plan("-f", write(tmp_path, manifest()), "-n", "other") == 1
    assert "does not match the namespace given with -n (other)" in capsys.readouterr().err


def test_a_cluster_not_found_exits_1_saying_which(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = manifest()
    missing["metadata"]["name"] = "nope"
    assert plan("-f", write(tmp_path, missing)) == 1
    assert "error: NodeCluster team/nope not found" in capsys.readouterr().err


def test_a_changed_provider_is_refused_as_the_api_server_would(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan("-f", write(tmp_path, manifest(providerRef={"name": "other"}))) == 1
    assert "spec.providerRef is immutable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (manifest(targetNodes=-1), "spec.targetNodes: Input should be greater than or equal"),
        (manifest(targetNode=5), "not fields of a NodeCluster spec (the API server would drop"),
        (manifest(targetNodes=20, maxNodes=10), "spec.targetNodes: must not exceed spec.maxNodes"),
        (manifest(profile={"machineType": "x", "labelz": {}}), "spec.profile.labelz"),
        ({"kind": "NodeProvider"}, "must hold exactly one NodeCluster manifest"),
    ],
    ids=["bad-value", "typo", "above-max", "nested-typo", "other-kind"],
)
def test_an_invalid_manifest_exits_1_naming_the_field(
    tmp_path: Path, doc: dict[str, Any], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plan("-f", write(tmp_path, doc)) == 1
    err = capsys.readouterr().err
    assert says in err
    assert err.startswith("error: ")


def test_labels_are_not_taken_for_typos(
    fake: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labelled = manifest(profile={"machineType": "small", "labels": {"team": "batch"}})
    assert plan("-f", write(tmp_path, labelled)) == 2
    assert "profile.labels" in capsys.readouterr().out


def run_command(*args: str, kubeconfig: str = "/nonexistent") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodecluster", "plan", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_real_command_exits_1_without_a_traceback(tmp_path: Path) -> None:
    usage = run_command()  # no -f: a usage error must not look like "changes" (2)
    assert usage.returncode == 1 and "the following arguments are required: -f" in usage.stderr
    missing = run_command("-f", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    bad = run_command("-f", str(broken))
    assert bad.returncode == 1 and "is not valid YAML" in bad.stderr
    # An API server that does not answer: a closed port on the loopback.
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    unreachable = run_command("-f", write(tmp_path, manifest()), kubeconfig=str(config))
    assert unreachable.returncode == 1, unreachable.stderr
    assert "cannot reach the API server" in unreachable.stderr
    for proc in (usage, missing, bad, unreachable):
        assert "Traceback" not in proc.stderr
