"""The benchmark's cluster: a local control plane, the CRDs, and the operator's identity.

The operator runs as the ServiceAccount of the generated install manifests
(`manifests/base/`), bound to the least-privilege RBAC of the Helm chart, never as
`system:masters`: masters are exempt from API Priority and Fairness, so an operator
running as one would be measured against a server that never queues it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nodecluster.controllers.kube import KubeClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from controlplane import ControlPlane  # noqa: E402

__all__ = ["ControlPlane", "Identity", "connect", "install", "say", "server_version"]

CRDS = sorted((ROOT / "crds").glob("*.yaml"))
INSTALL = ROOT / "manifests" / "base"
RBAC_FILES = [INSTALL / "namespace.yaml", INSTALL / "serviceaccount.yaml", INSTALL / "rbac.yaml"]


def say(message: str) -> None:
    """Progress, on stderr: stdout carries only the result."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Identity:
    """Who the operator is: its ServiceAccount and a kubeconfig that authenticates as it."""

    namespace: str
    name: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        """The name the API server (and so its audit log) knows the operator by."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def service_account_of(path: Path) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount in the generated install manifest."""
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "ServiceAccount":
            meta = doc["metadata"]
            return str(meta["namespace"]), str(meta["name"])
    raise RuntimeError(f"no ServiceAccount in {path}")


def install(cp: ControlPlane, work_dir: Path) -> Identity:
    """Apply the CRDs and the operator's RBAC; return a kubeconfig for its ServiceAccount."""
    cp.apply_crds(CRDS)
    files = [arg for path in RBAC_FILES for arg in ("-f", str(path))]
    cp.kubectl("apply", *files)
    namespace, name = service_account_of(INSTALL / "serviceaccount.yaml")
    token = cp.kubectl("create", "token", name, "-n", namespace, "--duration=24h").stdout.strip()
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "bench",
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority": cluster["certificate-authority"],
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": name}}],
        "current-context": "bench",
    }
    path = work_dir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(path, 0o600)
    return Identity(namespace=namespace, name=name, kubeconfig=path)


async def connect(kubeconfig: Path, max_connections: int) -> KubeClient:
    """A client for one kubeconfig, built exactly as the operator builds its own."""
    return await KubeClient.connect(max_connections=max_connections, kubeconfig=str(kubeconfig))


def server_version(cp: ControlPlane) -> str:
    """The API server's gitVersion."""
    out: dict[str, Any] = yaml.safe_load(cp.kubectl("version", "-o", "yaml").stdout)
    return str(out.get("serverVersion", {}).get("gitVersion", "unknown"))
