"""The Helm chart on a real API server: its output passes server-side validation, `helm
install` works, and the operator runs with nothing but the permissions the chart grants.

The operator process is started as the chart's ServiceAccount (a token from the
TokenRequest API), so every call it makes is authorised by the chart's RBAC: the core
scenarios passing prove the rules are enough, and the refusals below prove they are no
more than that.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kube import Kube, Operator, sample, service_account_kube, wait_for
from scenario import Scenario, bind_pod, kwok_cluster_in
from test_receivers import FIRING, post, receivers_address

import chart
from kwok import KwokProcess

RELEASE = "nodecluster-operator"
# The chart's default Lease name: the release's full name (here the release's name).
LEASE = RELEASE
# No cluster may run the chart's operator during the suite (the session's operator would
# fight it): an image that is never pulled keeps its container from starting anywhere,
# while the Pod object is still created and admitted (or refused) by Pod Security.
NEVER_STARTS = ("--set", "image.tag=e2e-never-pulled", "--set", "image.pullPolicy=Never")
# What RBAC refusals look like in the operator's log: the API server's message for a denied
# request, kopf's warning when it lacks a permission it would use, and the refusals of
# OwnerReferencesPermissionEnforcement (an ownerReference, or its blockOwnerDeletion, the
# operator lacks the RBAC to set). (A 403 for writing into a namespace being deleted is no
# refusal of RBAC.)
REFUSED_IN_LOG = (
    "is forbidden: User ",
    "Not enough permissions",
    "cannot set an ownerRef",
    "cannot set blockOwnerDeletion",
)


@dataclass
class Install:
    """One `helm install` of the chart and the identity it gives the operator."""

    kube: Kube
    helm: str
    namespace: str
    credentials_namespace: str
    service_account: str
    workdir: Path

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def can_i(self, *args: str) -> bool:
        proc = self.kube.kubectl("auth", "can-i", *args, f"--as={self.subject}", check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), proc.stderr
        return answer == "yes"

    def as_operator(self) -> Kube:
        return service_account_kube(
            self.kube, self.service_account, self.namespace, self.workdir / "sa.kubeconfig"
        )


def helm_binary(kube: Kube) -> str:
    if kube.control_plane is not None and (kube.control_plane.bin_dir / "helm").is_file():
        return str(kube.control_plane.bin_dir / "helm")
    found = chart.find_helm()
    if found is None:
        pytest.fail("helm not found: run tools/build-control-plane, put helm on PATH or set HELM")
    return found


def server_version(kube: Kube) -> str:
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]
    return str(version["gitVersion"]).lstrip("v").split("+")[0]


def helm(install_or_kube: Install | Kube, binary: str, *args: str) -> str:
    kube = install_or_kube.kube if isinstance(install_or_kube, Install) else install_or_kube
    proc = subprocess.run(
        [binary, "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed: {proc.stderr.strip()}"
    return proc.stdout


def api_status(
    as_kube: Kube, method: str, path: str, merge_patch: dict[str, object] | None = None
) -> int:
    """The HTTP status of one request made with as_kube's credentials (token and CA), with
    a JSON merge patch as its body if one is given."""
    config = yaml.safe_load(as_kube.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    if "certificate-authority-data" in cluster:
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        context = ssl.create_default_context(cadata=pem)
    else:
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    data = None
    if merge_patch is not None:
        headers["Content-Type"] = "application/merge-patch+json"
        data = json.dumps(merge_patch).encode()
    request = urllib.request.Request(
        cluster["server"].rstrip("/") + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@contextmanager
def chart_installed(
    kube: Kube, workdir: Path, release: str, prefix: str, *values: str
) -> Iterator[Install]:
    """`helm install` of the chart as `release` in a new namespace `<prefix>-<hex>`, with a
    namespace for provider credentials and these `--set` values; uninstalled afterwards."""
    binary = helm_binary(kube)
    suffix = secrets.token_hex(2)
    namespace = f"{prefix}-{suffix}"
    credentials = f"nodecluster-credentials-{suffix}"
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl("create", "namespace", credentials)
    # The chart's pod must satisfy the strictest Pod Security Standard: enforce it here.
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    install = Install(kube, binary, namespace, credentials, release, workdir)
    settings = [arg for value in values for arg in ("--set", value)]
    helm(
        kube,
        binary,
        "install",
        release,
        str(chart.CHART),
        "--namespace",
        namespace,
        "--set",
        f"rbac.secretNamespaces={{{credentials}}}",
        *settings,
        *NEVER_STARTS,
    )
    try:
        yield install
    finally:
        helm(kube, binary, "uninstall", release, "--namespace", namespace, "--wait")
        kube.kubectl("delete", "namespace", namespace, credentials, "--wait=false", check=False)


@pytest.fixture(scope="module")
def installed(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """The chart installed with its defaults (two replicas electing a leader on a Lease)
    and one namespace for provider credentials."""
    workdir = tmp_path_factory.mktemp("install")
    with chart_installed(kube, workdir, RELEASE, "nodecluster-system") as install:
        yield install


def test_helm_template_passes_server_side_validation(kube: Kube, ns: str) -> None:
    binary = helm_binary(kube)
    rendered = chart.render(
        binary,
        "--set",
        f"rbac.secretNamespaces={{{ns}}}",
        "--set",
        "service.enabled=true",
        # The monitoring objects of core kinds (the ServiceMonitor and PrometheusRule need
        # the Prometheus Operator's CRDs: tests/unit/test_chart_monitoring.py checks them).
        "--set",
        "metrics.service.enabled=true",
        "--set",
        "metrics.dashboard.enabled=true",
        release="dry-run",
        namespace=ns,
        kube_version=server_version(kube),
    )
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert kinds >= {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ConfigMap",
    }

    # Strict field validation: an unknown or misplaced field anywhere is an error, not a
    # warning, and nothing is stored.
    proc = kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=rendered, check=False
    )

    assert proc.returncode == 0, proc.stderr
    assert "deployment.apps/dry-run-nodecluster-operator created (server dry run)" in proc.stdout
    assert kube.get("deployment", "dry-run-nodecluster-operator", ns) is None


def test_helm_install_creates_a_pod_that_restricted_pod_security_admits(
    installed: Install,
) -> None:
    kube = installed.kube
    status = json.loads(
        helm(installed, installed.helm, "status", RELEASE, "-n", installed.namespace, "-o", "json")
    )
    assert status["info"]["status"] == "deployed"
    pdb = kube.get("poddisruptionbudget", RELEASE, installed.namespace) or {}
    assert pdb["spec"]["maxUnavailable"] == 1

    # The ReplicaSet controller creates the pod only if Pod Security admits it.
    pods = wait_for(
        "the operator's pod to be admitted",
        lambda: kube.items("pods", installed.namespace, f"app.kubernetes.io/instance={RELEASE}"),
    )

    spec = pods[0]["spec"]
    container = spec["containers"][0]
    assert spec["serviceAccountName"] == installed.service_account
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["args"][:3] == ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert container["args"][3:5] == ["--metrics-address", "0.0.0.0:8081"]
    # No operator.installationId: the operator appends this Kubernetes cluster's identity.
    assert container["args"][5:7] == ["--installation-name", f"{installed.namespace}.{RELEASE}"]
    assert container["args"][7:10] == ["--leader-elect", "--lease-name", LEASE]
    assert {"POD_NAME", "POD_NAMESPACE"} <= {e["name"] for e in container["env"]}
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "health",
        "scheme": "HTTP",
    }
    assert set(container["resources"]) == {"requests", "limits"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/lib/nodecluster-operator/simulator"} <= mounts


def test_the_documented_upgrade_applies_the_crds_then_upgrades_the_release(
    installed: Install,
) -> None:
    kube = installed.kube
    crds = sorted(str(p) for p in chart.CHART_CRDS.glob("*.yaml"))
    files = [arg for path in crds for arg in ("-f", path)]

    kube.kubectl("apply", "--server-side", "--force-conflicts", *files)
    helm(installed, installed.helm, "upgrade", RELEASE, str(chart.CHART),
         "-n", installed.namespace, "--reuse-values")  # fmt: skip

    status = json.loads(
        helm(installed, installed.helm, "status", RELEASE, "-n", installed.namespace, "-o", "json")
    )
    assert (status["version"], status["info"]["status"]) == (2, "deployed")
    kube.kubectl("wait", "--for=condition=established", "--timeout=30s", *files)
    deployment = kube.get("deployment", RELEASE, installed.namespace) or {}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[7:10] == ["--leader-elect", "--lease-name", LEASE], "--reuse-values must keep them"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_permissions_the_chart_does_not_grant_are_refused(installed: Install, ns: str) -> None:
    kube = installed.kube
    creds = installed.credentials_namespace
    # What the operator needs, it has.
    assert installed.can_i("patch", "nodeclusters", "-n", ns)
    assert installed.can_i("create", "clusternodes", "-n", ns)
    assert installed.can_i("patch", "nodeproviders", "--subresource=status")
    assert installed.can_i("patch", "nodeproviders")  # its finalizer, while they are used
    assert installed.can_i("create", "events", "-n", ns)
    assert installed.can_i("get", "events", "-n", ns)  # an operation's end Event, read back
    assert installed.can_i("get", "secrets", "-n", creds)
    # And nothing more.
    assert not installed.can_i("delete", "nodeproviders")
    assert not installed.can_i("update", "nodeproviders")
    assert not installed.can_i("create", "nodeclusters", "-n", ns)
    assert not installed.can_i("delete", "nodeclusters", "-n", ns)
    assert not installed.can_i("update", "nodeclusters", "-n", ns)
    # Children carry no blockOwnerDeletion, so the finalizers subresource is not needed.
    assert not installed.can_i("update", "nodeclusters", "--subresource=finalizers", "-n", ns)
    assert not installed.can_i("patch", "nodeclusters", "--subresource=scale", "-n", ns)
    assert not installed.can_i("patch", "nodeclusteroperations", "-n", ns)
    assert not installed.can_i("deletecollection", "clusternodes", "-n", ns)
    assert not installed.can_i("get", "secrets", "-n", ns)
    assert not installed.can_i("list", "secrets", "-n", creds)
    assert not installed.can_i("watch", "secrets", "-n", creds)
    assert not installed.can_i("list", "namespaces")  # only needed with watchNamespaces
    # The default installation id names the cluster by kube-system's uid: that one only.
    assert installed.can_i("get", "namespaces/kube-system")
    assert not installed.can_i("get", "namespaces/default")
    assert not installed.can_i("patch", "events", "-n", ns)
    assert not installed.can_i("list", "events", "-n", ns)
    assert not installed.can_i("get", "pods", "-n", ns)
    # Its own Lease in its own namespace: read, renewed, created the first time.
    home = installed.namespace
    assert installed.can_i("get", f"leases.coordination.k8s.io/{LEASE}", "-n", home)
    assert installed.can_i("patch", f"leases.coordination.k8s.io/{LEASE}", "-n", home)
    assert installed.can_i("create", "leases.coordination.k8s.io", "-n", home)
    assert not installed.can_i("update", f"leases.coordination.k8s.io/{LEASE}", "-n", home)
    assert not installed.can_i("delete", f"leases.coordination.k8s.io/{LEASE}", "-n", home)
    assert not installed.can_i("list", "leases.coordination.k8s.io", "-n", home)
    # Not another release's Lease, and no Lease anywhere else.
    assert not installed.can_i("get", "leases.coordination.k8s.io/another-operator", "-n", home)
    assert not installed.can_i("patch", "leases.coordination.k8s.io/another-operator", "-n", home)
    for elsewhere in (ns, "kube-system"):
        assert not installed.can_i("create", "leases.coordination.k8s.io", "-n", elsewhere)
        assert not installed.can_i("get", f"leases.coordination.k8s.io/{LEASE}", "-n", elsewhere)
        assert not installed.can_i("patch", f"leases.coordination.k8s.io/{LEASE}", "-n", elsewhere)

    # Real requests with the ServiceAccount's token.
    np = sample("nodeprovider-simulator.yaml")
    np["metadata"]["name"] = f"keep-{ns}"
    kube.apply(np)
    for namespace in (ns, creds):
        kube.kubectl("create", "secret", "generic", "cloud", "-n", namespace, "--from-literal=k=v")
    operator = installed.as_operator()
    try:
        group = "/apis/nodecluster.io/v1alpha1"
        assert api_status(operator, "DELETE", f"{group}/nodeproviders/keep-{ns}") == 403
        assert api_status(operator, "GET", f"{group}/nodeproviders/keep-{ns}") == 200
        assert api_status(operator, "GET", f"/api/v1/namespaces/{ns}/secrets/cloud") == 403
        assert api_status(operator, "GET", f"/api/v1/namespaces/{creds}/secrets/cloud") == 200
        assert api_status(operator, "GET", f"/api/v1/namespaces/{creds}/secrets") == 403
        assert kube.get("nodeprovider", f"keep-{ns}") is not None
    finally:
        kube.kubectl("delete", "nodeprovider", f"keep-{ns}", check=False)
        kube.kubectl("delete", "secret", "cloud", "-n", creds, check=False)


def test_an_old_child_that_blocks_owner_deletion_stays_writable_without_finalizers_rights(
    installed: Install, ns: str
) -> None:
    """ClusterNodes made by older versions (or where OwnerReferencesPermissionEnforcement
    was off) carry `blockOwnerDeletion: true`. The plugin checks only writes that set or
    change ownerReferences, so every write the operator makes to such a child is allowed."""
    kube = installed.kube
    kube.apply(
        {
            "apiVersion": "nodecluster.io/v1alpha1",
            "kind": "NodeCluster",
            "metadata": {"name": "old", "namespace": ns},
            "spec": {
                "providerRef": {"name": f"no-such-provider-{ns}"},
                "profile": {"machineType": "small"},
                "targetNodes": 1,
                "paused": True,
            },
        }
    )
    owner = kube.get("nodecluster", "old", ns) or {}
    child = {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "ClusterNode",
        "metadata": {
            "name": "old-1",
            "namespace": ns,
            "ownerReferences": [
                {
                    "apiVersion": "nodecluster.io/v1alpha1",
                    "kind": "NodeCluster",
                    "name": "old",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "clusterName": "old",
            "providerRef": {"name": f"no-such-provider-{ns}"},
            "profile": {"machineType": "small"},
            "powerState": "Running",
        },
    }
    operator = installed.as_operator()

    # Where the plugin is on (always in the local control plane; not in a default kind
    # cluster) the operator may not create such a child itself.
    created = operator.apply(child, check=False)
    if created.returncode != 0 or kube.control_plane is not None:
        assert "cannot set blockOwnerDeletion" in created.stderr, created.stderr or "created"
        kube.apply(child)

    # Each write the operator makes to an existing child, as the one request it sends.
    node = f"/apis/nodecluster.io/v1alpha1/namespaces/{ns}/clusternodes/old-1"
    writes = [
        (node, {"metadata": {"finalizers": ["nodecluster.io/machine"]}}),
        (node, {"metadata": {"annotations": {"nodecluster.io/e2e": "old"}}}),
        (node, {"spec": {"powerState": "Stopped"}}),
        (f"{node}/status", {"status": {"zone": "z1"}}),
        (node, {"metadata": {"finalizers": None}}),
    ]
    for path, body in writes:
        assert api_status(operator, "PATCH", path, body) == 200, body
    assert api_status(operator, "DELETE", node) == 200


def test_operator_with_only_the_charts_permissions_runs_the_core_scenarios(
    installed: Install, operator: Operator, ns: str
) -> None:
    kube = installed.kube
    sc = Scenario(kube, ns, operator.workdir)
    creds = installed.credentials_namespace
    kube.kubectl("create", "secret", "generic", f"cloud-{ns}", "-n", creds, "--from-literal=k=v")
    as_operator = installed.as_operator()
    # The chart's own leader-election arguments, the Lease in the release namespace as the
    # pod's POD_NAMESPACE says, and a pod's name.
    deployment = kube.get("deployment", RELEASE, installed.namespace) or {}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    election = args[args.index("--leader-elect") :]
    assert election[:3] == ["--leader-elect", "--lease-name", LEASE]
    pod_name = f"{RELEASE}-e2e"
    chart_operator = Operator(
        as_operator,
        installed.workdir,
        extra_env={"POD_NAME": pod_name, "POD_NAMESPACE": installed.namespace},
        extra_args=election,
    )

    # Never two operators at once: the session's operator steps aside for this test.
    operator.stop()
    try:
        chart_operator.start()

        def holder() -> str:
            got = kube.kubectl(
                "get", "lease", LEASE, "-n", installed.namespace,
                "-o", "jsonpath={.spec.holderIdentity}", check=False,
            )  # fmt: skip
            return got.stdout.strip() if got.returncode == 0 else ""

        # It acquires the Lease with the chart's RBAC (kubectl get lease shows the holder:
        # the pod's name and a suffix for this process) before it acts.
        held = wait_for("the operator to hold the chart's Lease", holder, timeout=60)
        assert held.startswith(f"{pod_name}_"), held
        np = sc.make_provider(createLatencySeconds=1, deleteLatencySeconds=1)
        np["spec"]["credentialsSecretRef"] = {"name": f"cloud-{ns}", "namespace": creds}
        kube.apply(np)
        wait_for(
            "the NodeProvider to read its credentials and be Ready",
            lambda: kube.condition("nodeprovider", sc.provider, "Ready").get("status") == "True",
        )
        # Its installation id: the default name and this Kubernetes cluster's identity.
        installation = kube.installation_id()
        provider = kube.get("nodeprovider", sc.provider) or {}
        assert list(provider["status"]["installations"]) == [installation]
        assert installation.startswith("default.") and len(installation) == len("default.") + 8

        sc.make_cluster(targetNodes=3)
        sc.wait_converged(3)
        kube.kubectl("scale", "nodecluster/workers", "--replicas=5", "-n", ns)
        sc.wait_converged(5)
        events = kube.items("events", ns)
        assert any(e["reason"] == "Scaling" for e in events), "events must be created"
        assert holder() == held, "one process, one holder: the Lease was kept, not retaken"

        kube.kubectl("delete", "nodecluster/workers", "-n", ns, "--wait=false")
        wait_for("the NodeCluster to be gone", lambda: sc.nc() == {}, timeout=90)
        assert sc.nodes() == []
        assert sc.inventory.names(sc.tag()) == set()

        assert chart_operator.alive(), chart_operator.log_tail()
        log = chart_operator.log_path.read_text(errors="replace")
        refused = [line for line in log.splitlines() if any(s in line for s in REFUSED_IN_LOG)]
        assert refused == [], "\n".join(refused[:20])
    finally:
        kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
        kube.kubectl("delete", "nodeprovider", sc.provider, "--timeout=30s", check=False)
        chart_operator.stop()
        operator.start()


NODES_RELEASE = "nodecluster-operator-nodes"
RECEIVERS_RELEASE = "nodecluster-operator-receivers"


@pytest.fixture(scope="module")
def installed_with_nodes(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """A second release with Node integration (`nodes.enabled`) and the kwok driver's
    Nodes on this API server (`rbac.kwokNodes`): its own ServiceAccount and rules, so the
    first release's tests see the chart's defaults."""
    workdir = tmp_path_factory.mktemp("install-nodes")
    values = ("nodes.enabled=true", "rbac.kwokNodes=true")
    with chart_installed(kube, workdir, NODES_RELEASE, "nodecluster-nodes", *values) as install:
        yield install


def test_with_nodes_and_kwok_nodes_the_charts_permissions_are_all_the_operator_needs(
    installed_with_nodes: Install, operator: Operator, kwok: KwokProcess, ns: str
) -> None:
    """As the chart's ServiceAccount, with the chart's `--nodes`, the operator makes its
    machines as kwok Nodes on its own API server (the kwok driver's rules), follows them
    (watch, link, the profile's labels patched on) and drains one before its machine goes
    (cordon, its pods listed and evicted): with no 403 anywhere in its log. And nothing on
    Nodes and pods beyond that."""
    install = installed_with_nodes
    kube = install.kube
    deployment = kube.get("deployment", NODES_RELEASE, install.namespace) or {}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--nodes" in args
    assert install.can_i("create", "nodes") and install.can_i("watch", "nodes")
    assert install.can_i("create", "pods", "--subresource=eviction", "-n", ns)
    assert install.can_i("list", "pods", "--all-namespaces")
    for refused in (
        ("update", "nodes"),
        ("patch", "nodes", "--subresource=status"),
        ("get", "pods", "-n", ns),
        ("delete", "pods", "-n", ns),
        ("watch", "pods", "-n", ns),
    ):
        assert not install.can_i(*refused), refused

    chart_operator = Operator(install.as_operator(), install.workdir, extra_args=["--nodes"])
    operator.stop()  # never two operators at once
    try:
        chart_operator.start()
        with kwok_cluster_in(kube, kwok, ns) as cluster:
            profile = {"machineType": "small", "nodeLabels": {"tier": "front"}}
            cluster.make_cluster(targetNodes=2, minNodes=0, profile=profile)
            cluster.wait("2 Ready kwok Nodes, made as the chart's ServiceAccount", 2)
            by_cn = wait_for("every ClusterNode linked", lambda: cluster.linked(2))
            wait_for(
                "the profile's label on every Node",
                lambda: all(
                    (kube.get("node", n) or {})["metadata"]["labels"].get("tier") == "front"
                    for n in by_cn.values()
                ),
            )
            pods = {cn: f"web-{i}" for i, cn in enumerate(sorted(by_cn))}
            for cn, pod in pods.items():
                bind_pod(kube, ns, pod, by_cn[cn])
            wait_for(
                "kwok to run the pods",
                lambda: all(
                    kube.condition("pod", pod, "Ready", ns).get("status") == "True"
                    for pod in pods.values()
                ),
            )
            cluster.patch(targetNodes=1)
            cluster.wait("1 Node after a drained scale-in", 1)
            [gone] = [cn for cn in by_cn if cn not in cluster.members()]
            assert kube.get("node", by_cn[gone]) is None
            assert kube.get("pod", pods[gone], ns) is None  # evicted by the operator
            drained = [e for e in kube.items("events", ns) if e.get("reason") == "Draining"]
            assert [e["involvedObject"]["name"] for e in drained] == [gone]

        assert chart_operator.alive(), chart_operator.log_tail()
        log = chart_operator.log_path.read_text(errors="replace").splitlines()
        refused = [line for line in log if any(s in line for s in REFUSED_IN_LOG)]
        assert refused == [], "\n".join(refused[:20])
    finally:
        chart_operator.stop()
        operator.start()


def test_with_receivers_the_charts_permissions_are_all_a_trigger_needs(
    kube: Kube, operator: Operator, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A release with `receivers.enabled` (and the receivers' namespace in
    `rbac.secretNamespaces`, where their token Secrets are read): as its ServiceAccount,
    the operator watches the receiver, reads its Secret, writes its status and creates the
    operation a request asks for, with no 403 anywhere in its log; and no more than that."""
    workdir = tmp_path_factory.mktemp("install-receivers")
    values = ("receivers.enabled=true", f"rbac.secretNamespaces={{{ns}}}")
    with chart_installed(kube, workdir, RECEIVERS_RELEASE, "nodecluster-rcv", *values) as install:
        assert install.can_i("create", "nodeclusteroperations", "-n", ns)
        assert install.can_i("patch", "nodeclusterreceivers", "--subresource=status", "-n", ns)
        assert install.can_i("get", "secrets", "-n", ns)
        for refused in (
            ("patch", "nodeclusterreceivers", "-n", ns),
            ("create", "nodeclusterreceivers", "-n", ns),
            ("delete", "nodeclusteroperations", "-n", ns),
            ("update", "nodeclusteroperations", "-n", ns),
            ("list", "secrets", "-n", ns),
            ("get", "secrets", "-n", install.credentials_namespace),  # overridden: not listed
        ):
            assert not install.can_i(*refused), refused
        args = ["--receiver-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0"]
        chart_operator = Operator(install.as_operator(), install.workdir, extra_args=args)
        sc = Scenario(kube, ns, operator.workdir)
        token = secrets.token_hex(16)
        operator.stop()  # never two operators at once
        try:
            chart_operator.start()
            sc.make_provider()
            sc.make_cluster(targetNodes=0, minNodes=0)
            sc.wait_converged(0)
            kube.kubectl(
                "create", "secret", "generic", "rcv", "-n", ns, f"--from-literal=t={token}"
            )
            receiver = {
                "apiVersion": "nodecluster.io/v1alpha1",
                "kind": "NodeClusterReceiver",
                "metadata": {"name": "scale-out", "namespace": ns},
                "spec": {
                    "clusterName": "workers",
                    "action": "ScaleOut",
                    "tokenSecretRef": {"name": "rcv", "key": "t"},
                },
            }
            kube.apply(receiver)
            wait_for(
                "the receiver Ready",
                lambda: (
                    kube.condition("nodeclusterreceiver", "scale-out", "Ready", ns).get("status")
                    == "True"
                ),
                timeout=60,
            )
            url = f"http://{receivers_address(chart_operator)}/receivers/{ns}/scale-out"
            status, answer, _ = post(url, token, FIRING)
            assert status == 202, answer
            sc.wait_converged(1)
            assert (kube.status("nodeclusterreceiver", "scale-out", ns))["counts"]["triggered"] == 1

            assert chart_operator.alive(), chart_operator.log_tail()
            log = chart_operator.log_path.read_text(errors="replace").splitlines()
            refused = [line for line in log if any(s in line for s in REFUSED_IN_LOG)]
            assert refused == [], "\n".join(refused[:20])
        finally:
            kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
            kube.kubectl("delete", "nodeprovider", sc.provider, "--timeout=30s", check=False)
            chart_operator.stop()
            operator.start()
