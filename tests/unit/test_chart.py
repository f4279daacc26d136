"""The Helm chart renders the least privilege the operator needs, and nothing more, for
every combination of its options; its values are typed and documented; it lints clean.

The e2e suite (tests/e2e/test_install.py) proves on a real API server that these rules
are enough for the operator and refuse the rest; this file pins down the exact rules so
that any widening is a deliberate, reviewed change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecluster.cli import installation_id

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import chart  # noqa: E402

HELM = chart.find_helm()
pytestmark = pytest.mark.needs_tool("helm")  # skip or fail: tests/unit/conftest.py

Rules = dict[tuple[str, str, tuple[str, ...]], set[str]]

CLUSTER_RULES: Rules = {
    ("nodecluster.io", "nodeproviders", ()): {"get", "list", "watch", "patch"},
    ("nodecluster.io", "nodeproviders/status", ()): {"patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions", ()): {"list", "watch"},
    ("", "namespaces", ("kube-system",)): {"get"},
}
NAMESPACED_RULES: Rules = {
    ("nodecluster.io", "nodeclusters", ()): {"get", "list", "watch", "patch"},
    ("nodecluster.io", "clusternodes", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("nodecluster.io", "nodeclusteroperations", ()): {"get", "list", "watch"},
    ("nodecluster.io", "nodeclusters/status", ()): {"patch"},
    ("nodecluster.io", "clusternodes/status", ()): {"patch"},
    ("nodecluster.io", "nodeclusteroperations/status", ()): {"patch"},
    ("", "events", ()): {"create", "get"},
}


def render(*values: str) -> list[dict[str, Any]]:
    assert HELM is not None
    text = chart.render(HELM, *values, release="nc", namespace="ops", include_crds=False)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def rules(role: dict[str, Any]) -> Rules:
    """A role's rules as (group, resource, names) -> verbs; fails on a rule listed twice."""
    out: Rules = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        names = tuple(rule.get("resourceNames", ()))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, names)
                assert key not in out, f"{key} granted twice"
                out[key] = set(rule["verbs"])
    return out


def bindings_of(docs: list[dict[str, Any]], role: str) -> list[tuple[str, str]]:
    """(binding kind, namespace) of every binding to `role`, all to the chart's account."""
    found = []
    for d in docs:
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding") and d["roleRef"]["name"] == role:
            assert d["subjects"] == [
                {"kind": "ServiceAccount", "name": "nc-nodecluster-operator", "namespace": "ops"}
            ]
            found.append((d["kind"], d["metadata"].get("namespace", "")))
    return sorted(found)


def test_default_install_grants_exactly_what_the_operator_uses() -> None:
    docs = render()

    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator")) == CLUSTER_RULES
    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator-namespaced")) == (
        NAMESPACED_RULES
    )
    assert bindings_of(docs, "nc-nodecluster-operator") == [("ClusterRoleBinding", "")]
    assert bindings_of(docs, "nc-nodecluster-operator-namespaced") == [("ClusterRoleBinding", "")]
    # The only Role: the leader Lease's (test_leader_election_...); no Secret access
    # unless rbac.secretNamespaces says so.
    assert [r["metadata"]["name"] for r in find(docs, "Role")] == [
        "nc-nodecluster-operator-leader-election"
    ]
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
    }


def test_no_rule_uses_a_wildcard_or_the_scale_subresource() -> None:
    docs = render(
        "--set",
        "operator.watchNamespaces={a}",
        "--set",
        "rbac.secretNamespaces={creds}",
    )
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for (group, resource, _), verbs in rules(role).items():
            assert "*" not in verbs and "*" not in (group, resource)
            assert not verbs & {"update", "deletecollection", "escalate", "bind", "impersonate"}
            assert resource != "nodeclusters/scale"


def test_secrets_are_readable_one_by_one_and_only_in_the_listed_namespaces() -> None:
    docs = render("--set", "rbac.secretNamespaces={creds,more}")

    roles = find(docs, "Role", "nc-nodecluster-operator-secrets")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["creds", "more"]
    for role in roles:
        assert rules(role) == {("", "secrets", ()): {"get"}}
    assert bindings_of(docs, "nc-nodecluster-operator-secrets") == [
        ("RoleBinding", "creds"),
        ("RoleBinding", "more"),
    ]

    named = render("--set", "rbac.secretNamespaces={creds}", "--set", "rbac.secretNames={cloud}")
    role = one(named, "Role", "nc-nodecluster-operator-secrets")
    assert rules(role) == {("", "secrets", ("cloud",)): {"get"}}


def test_the_installation_is_named_by_the_release_unless_its_id_is_set() -> None:
    def installation(
        *values: str, release: str = "nc", namespace: str = "ops"
    ) -> tuple[list[str], Rules]:
        text = chart.render(HELM, *values, release=release, namespace=namespace, include_crds=False)
        docs = [d for d in yaml.safe_load_all(text) if d]
        [deployment] = find(docs, "Deployment")
        found: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        flag = [a for a in found if a.startswith("--installation-")]
        [cluster_role, _] = find(docs, "ClusterRole")
        cluster = rules(cluster_role)
        return [*flag, found[found.index(flag[0]) + 1]], cluster

    kube_system = ("", "namespaces", ("kube-system",))
    # By default the operator appends the Kubernetes cluster's identity, read from
    # kube-system: granted that one Namespace, nothing more.
    args, cluster = installation()
    assert args == ["--installation-name", "ops.nc"]
    assert cluster[kube_system] == {"get"}
    # A given id is taken verbatim, and then kube-system is none of the operator's business.
    args, cluster = installation("--set", "operator.installationId=prod-eu")
    assert args == ["--installation-id", "prod-eu"]
    assert kube_system not in cluster
    args, _ = installation("--set", f"operator.installationId={'x' * 63}")
    assert args == ["--installation-id", "x" * 63]
    # A long release name is cut to a valid name that keeps a hash of the whole.
    args, _ = installation(release="r" * 53, namespace="n" * 20)
    name = args[1]
    assert len(name) == 63 and name.startswith("nnn") and installation_id(name) == name


def test_watch_namespaces_narrow_the_namespaced_grants_to_those_namespaces() -> None:
    docs = render("--set", "operator.watchNamespaces={team-a,team-b}")

    cluster = rules(one(docs, "ClusterRole", "nc-nodecluster-operator"))
    assert cluster == {**CLUSTER_RULES, ("", "namespaces", ()): {"list", "watch"}}
    assert bindings_of(docs, "nc-nodecluster-operator-namespaced") == [
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]
    # NodeProviders are cluster-scoped; their Events land in "default".
    events = one(docs, "Role", "nc-nodecluster-operator-provider-events")
    assert events["metadata"]["namespace"] == "default"
    assert rules(events) == {("", "events", ()): {"create"}}
    args = one(docs, "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"]
    assert args["containers"][0]["args"][7:11] == ["--namespace", "team-a", "--namespace", "team-b"]


LEASE_ROLE = "nc-nodecluster-operator-leader-election"


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", "nc-nodecluster-operator")["spec"]
    return spec


def test_by_default_two_replicas_elect_a_leader_on_the_releases_lease() -> None:
    docs = render()
    spec = pod_spec(docs)
    pod = spec["template"]["spec"]
    container = pod["containers"][0]

    assert spec["replicas"] == 2
    assert container["args"][7:] == [
        "--leader-elect",
        "--lease-name",
        "nc-nodecluster-operator",
        "--lease-duration",
        "15",
        "--renew-deadline",
        "10",
        "--retry-period",
        "2",
    ]
    # The Lease's holder is the pod, the Lease in the pod's (the release's) namespace.
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}) for e in container["env"]}
    assert env["POD_NAME"] == {"fieldPath": "metadata.name"}
    assert env["POD_NAMESPACE"] == {"fieldPath": "metadata.namespace"}
    assert "POD_ID" not in env, "kopf's peering identity: the chart no longer peers"
    # A new pod is a standby until the old leader lets go: rolling is safe, surge first.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    # Replicas preferably on different nodes, selected by the pod's own labels.
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = spec["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    # Drains take one replica at a time.
    pdb = one(docs, "PodDisruptionBudget", "nc-nodecluster-operator")
    assert pdb["metadata"]["namespace"] == "ops"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_leader_election_is_granted_its_own_lease_in_the_release_namespace_only() -> None:
    docs = render("--set", "leaderElection.leaseName=fleet-a")

    role = one(docs, "Role", LEASE_ROLE)
    assert role["metadata"]["namespace"] == "ops"
    # get and patch on that one Lease; create cannot be narrowed by name.
    assert rules(role) == {
        ("coordination.k8s.io", "leases", ("fleet-a",)): {"get", "patch"},
        ("coordination.k8s.io", "leases", ()): {"create"},
    }
    assert bindings_of(docs, LEASE_ROLE) == [("RoleBinding", "ops")]
    for cluster_role in find(docs, "ClusterRole"):
        assert all(group != "coordination.k8s.io" for group, _, _ in rules(cluster_role))
    args = pod_spec(docs)["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--lease-name") + 1] == "fleet-a"


def test_one_replica_or_none_has_no_disruption_budget() -> None:
    for replicas in ("0", "1"):
        docs = render("--set", f"replicaCount={replicas}")
        assert find(docs, "PodDisruptionBudget") == []
        assert pod_spec(docs)["replicas"] == int(replicas)
    assert find(render("--set", "podDisruptionBudget.enabled=false"), "PodDisruptionBudget") == []
    # A user's affinity replaces the chart's default, it is not merged with it.
    mine = render("--set", "affinity.nodeAffinity.x=y")
    assert pod_spec(mine)["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}


def test_without_leader_election_one_replica_runs_alone_and_never_overlaps() -> None:
    docs = render("--set", "leaderElection.enabled=false", "--set", "replicaCount=1")

    spec = pod_spec(docs)
    assert spec["strategy"] == {"type": "Recreate"}
    container = spec["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--lease") or a == "--leader-elect"]
    assert not {"POD_NAME", "POD_NAMESPACE"} & {e["name"] for e in container["env"]}
    assert find(docs, "Role") == [] and find(docs, "PodDisruptionBudget") == []


def test_two_replicas_without_leader_election_are_refused_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match=r"replicaCount 2 needs leaderElection\.enabled"):
        render("--set", "leaderElection.enabled=false")
    with pytest.raises(RuntimeError, match="retryPeriodSeconds < renewDeadlineSeconds < lease"):
        render("--set", "leaderElection.renewDeadlineSeconds=20")


def test_node_integration_is_off_by_default_and_grants_only_what_a_drain_needs() -> None:
    pod = one(render(), "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"]
    assert "--nodes" not in pod["containers"][0]["args"]

    docs = render("--set", "nodes.enabled=true", "--set", "operator.watchNamespaces={team-a}")

    # Nodes and their pods are cluster-wide, whatever namespaces the operator serves.
    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator")) == {
        **CLUSTER_RULES,
        ("", "namespaces", ()): {"list", "watch"},
        ("", "nodes", ()): {"list", "watch", "patch", "delete"},
        ("", "pods", ()): {"list"},
        ("", "pods/eviction", ()): {"create"},
    }
    pod = one(docs, "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"]
    assert "--nodes" in pod["containers"][0]["args"]


def test_receivers_are_off_by_default_and_grant_only_what_a_trigger_needs() -> None:
    docs = render()
    pod = one(docs, "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"]
    assert "--receiver-address" not in pod["containers"][0]["args"]
    assert not find(docs, "Service")
    assert not any("nodeclusterreceivers" in key[1] for key in rules(
        one(docs, "ClusterRole", "nc-nodecluster-operator-namespaced")
    ))  # fmt: skip

    docs = render(
        "--set", "receivers.enabled=true",
        "--set", "rbac.secretNamespaces={team-a}",
        "--set", "operator.watchNamespaces={team-a}",
    )  # fmt: skip

    # Namespaced like the kinds they act on: bound only where the operator serves.
    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator-namespaced")) == {
        **NAMESPACED_RULES,
        ("nodecluster.io", "nodeclusteroperations", ()): {"get", "list", "watch", "create"},
        ("nodecluster.io", "nodeclusterreceivers", ()): {"get", "list", "watch"},
        ("nodecluster.io", "nodeclusterreceivers/status", ()): {"patch"},
    }
    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator")) == {
        **CLUSTER_RULES,
        ("", "namespaces", ()): {"list", "watch"},
    }
    # Token Secrets are read as credentials are: get, one by one, in the listed namespaces.
    (secrets,) = find(docs, "Role", "nc-nodecluster-operator-secrets")
    assert rules(secrets) == {("", "secrets", ()): {"get"}}
    container = one(docs, "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = container["args"]
    assert args[args.index("--receiver-address") + 1] == "0.0.0.0:8082"
    assert {"name": "receivers", "containerPort": 8082, "protocol": "TCP"} in container["ports"]
    service = one(docs, "Service", "nc-nodecluster-operator-receivers")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "receivers", "port": 8082, "targetPort": "receivers", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"]
        == (one(docs, "Deployment", "nc-nodecluster-operator")["spec"]["selector"]["matchLabels"])
    )


def test_the_kwok_drivers_nodes_are_granted_only_when_asked_for() -> None:
    assert ("", "nodes", ()) not in rules(one(render(), "ClusterRole", "nc-nodecluster-operator"))

    docs = render("--set", "rbac.kwokNodes=true")

    assert rules(one(docs, "ClusterRole", "nc-nodecluster-operator")) == {
        **CLUSTER_RULES,
        ("", "nodes", ()): {"get", "list", "create", "patch", "delete"},
    }
    # With Node integration as well: one rule for nodes, with both's verbs.
    docs = render("--set", "rbac.kwokNodes=true", "--set", "nodes.enabled=true")
    nodes = rules(one(docs, "ClusterRole", "nc-nodecluster-operator"))[("", "nodes", ())]
    assert nodes == {"get", "list", "watch", "create", "patch", "delete"}


def test_the_pod_runs_locked_down_with_probes_and_writable_scratch_only() -> None:
    pod = one(render(), "Deployment", "nc-nodecluster-operator")["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["command"] == ["nodecluster-operator"]
    assert container["args"][:7] == [
        "run",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--metrics-address",
        "0.0.0.0:8081",
        "--installation-name",
        "ops.nc",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert set(container["resources"]) == {"requests", "limits"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "simulator": env["NODECLUSTER_SIMULATOR_DIR"]}
    assert all("emptyDir" in v for v in pod["volumes"])


def test_helm_lint_strict_is_clean_with_every_option() -> None:
    assert HELM is not None
    everything = ["operator.watchNamespaces={a}", "service.enabled=true",
                  "rbac.secretNamespaces={b}", "namespace.create=true",
                  "nodes.enabled=true", "metrics.service.enabled=true",
                  "metrics.serviceMonitor.enabled=true", "metrics.dashboard.enabled=true",
                  "metrics.prometheusRule.enabled=true", "receivers.enabled=true"]  # fmt: skip
    for values in ([], [arg for value in everything for arg in ("--set", value)]):
        proc = subprocess.run(
            [HELM, "lint", "--strict", str(chart.CHART), *values],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "replicaCount=-1"], "replicaCount"),
        (["--set", "peering.enabled=true"], "peering"),
        (["--set", "podDisruptionBudget.maxUnavailable=0"], "maxUnavailable"),
        (["--set", "unknownValue=1"], "unknownValue"),
        (["--set", "rbac.secretNamespaces={Not_A_Namespace}"], "secretNamespaces"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "receivers.service.type=ExternalName"], "type"),
        (["--set", "receivers.port=0"], "port"),
    ],
)
def test_the_schema_refuses_bad_values(values: list[str], complaint: str) -> None:
    with pytest.raises(RuntimeError, match=complaint):
        render(*values)


def _documented_keys(text: str) -> tuple[list[str], list[str]]:
    """(every key path in values.yaml, the ones with no comment on them or an ancestor)."""
    keys: list[str] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    previous = ""
    for line in text.splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = previous.strip().startswith("#") or any(d for _, _, d in stack)
            path = ".".join([k for _, k, _ in stack] + [match.group(2)])
            keys.append(path)
            if not documented and not line.rstrip().endswith(":"):
                undocumented.append(path)
            stack.append((indent, match.group(2), previous.strip().startswith("#")))
        if line.strip():
            previous = line
    return keys, undocumented


def test_every_value_is_documented_and_typed() -> None:
    values_text = (chart.CHART / "values.yaml").read_text()
    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    keys, undocumented = _documented_keys(values_text)

    assert undocumented == []
    for path in keys:
        node = schema
        for part in path.split("."):
            if "properties" not in node:
                break  # a free-form object (e.g. resources.limits, securityContext)
            assert part in node["properties"], f"{path} is not in values.schema.json"
            node = node["properties"][part]
            assert node.get("description"), f"{path} has no description in the schema"
    assert set(yaml.safe_load(values_text)) == set(schema["properties"])
