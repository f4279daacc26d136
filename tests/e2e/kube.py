"""Small helpers for the end-to-end suite: kubectl, waiting on conditions, the operator
process and the simulator inventory. Waiting is always on a condition with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
T = TypeVar("T")


class Timeout(AssertionError):
    """A condition did not become true before its deadline."""


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def wait_audited(
    what: str, audit: Callable[[], str | None], timeout: float = 60.0, interval: float = 0.5
) -> None:
    """Poll an audit (None when all is as it should be, else what differs) until it passes;
    fail with `what` and the audit's last finding."""
    last: list[str | None] = [None]

    def passed() -> bool:
        last[0] = audit()
        return last[0] is None

    try:
        wait_for(what, passed, timeout=timeout, interval=interval)
    except Timeout as err:
        raise Timeout(f"{err}: {last[0]}") from None


class Kube:
    """kubectl against one kubeconfig."""

    def __init__(
        self, kubeconfig: Path, kubectl_bin: str = "kubectl", control_plane: Any = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_bin = kubectl_bin
        self.control_plane = control_plane

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; on failure with check=True, raise with its stderr."""
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(
        self,
        manifest: str | dict[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Apply YAML text or objects."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=manifest, check=check)

    def apply_crds(self, paths: Iterable[Path]) -> None:
        """Install the CRDs and wait until the API serves them."""
        files = [str(p) for p in paths]
        args: list[str] = []
        for f in files:
            args += ["-f", f]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        # Polled, not `kubectl wait`: that fails at once ("status.conditions accessor error")
        # when it reads a CRD the API server has not given any condition yet.
        names = [yaml.safe_load(Path(f).read_text())["metadata"]["name"] for f in files]

        def established() -> bool:
            for name in names:
                crd = self.get("customresourcedefinition", name) or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if not any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    return False
            return True

        wait_for("the CRDs established", established, timeout=60)

    def installation_id(self, name: str = "default") -> str:
        """The id an operator started with `--installation-name name` (the default) has on
        this cluster: the name and 8 hex digits of the kube-system Namespace's uid."""
        from nodecluster.providers.identity import default_installation_id

        uid = (self.get("namespace", "kube-system") or {})["metadata"]["uid"]
        return default_installation_id(name, uid)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """One object as a dict, or None when it does not exist."""
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        obj: dict[str, Any] = json.loads(proc.stdout)
        return obj

    def items(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """List objects."""
        args = ["get", kind, "-o", "json"]
        args += ["-n", namespace] if namespace else ["-A"]
        if selector:
            args += ["-l", selector]
        data = json.loads(self.kubectl(*args).stdout)
        items: list[dict[str, Any]] = data.get("items", [])
        return items

    def status(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        obj = self.get(kind, name, namespace)
        return (obj or {}).get("status") or {}

    def condition(
        self, kind: str, name: str, ctype: str, namespace: str | None = None
    ) -> dict[str, Any]:
        for c in self.status(kind, name, namespace).get("conditions", []):
            if c.get("type") == ctype:
                return dict(c)
        return {}


def sample(name: str) -> dict[str, Any]:
    """A manifest from manifests/samples/ as an object (tests then adjust names and paths)."""
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    return doc


class Inventory:
    """Read-only view of a simulator SQLite file: the provider-side truth."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def machines(self, cluster: str | None = None) -> list[dict[str, Any]]:
        """Machines that exist (not yet gone), optionally of one `<ns>/<cluster>`."""
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            now = time.time()
            rows = db.execute("SELECT * FROM machines").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()
        out = []
        for r in rows:
            if r["gone_at"] is not None and r["gone_at"] <= now:
                continue
            if cluster is not None and r["cluster"] != cluster:
                continue
            machine = dict(r)
            # The ClusterNode it belongs to: its node tag (machine names are derived from the
            # node's identity), or the name of a machine made before tags existed.
            tags = json.loads(machine.get("tags") or "{}")
            machine["node"] = tags.get("nodecluster.io/node") or machine["name"]
            out.append(machine)
        return out

    def names(self, cluster: str | None = None) -> set[str]:
        """The ClusterNodes whose machines exist (optionally of one `<ns>/<cluster>`)."""
        return {m["node"] for m in self.machines(cluster)}

    def machine_names(self, cluster: str | None = None) -> set[str]:
        """The provider-side names of the machines that exist (what `calls` records)."""
        return {m["name"] for m in self.machines(cluster)}

    def calls(self, op: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            q = "SELECT * FROM calls" + (" WHERE op=?" if op else "") + " ORDER BY id"
            return [dict(r) for r in db.execute(q, (op,) if op else ())]
        finally:
            db.close()


SERVED_AT = re.compile(r"Metrics served at (http://\S+/metrics)")
"""The line `run --metrics-address` logs once its endpoint is bound (controllers/metrics.py)."""


class Operator:
    """The operator as a real process: `python -m nodecluster run`."""

    def __init__(
        self,
        kube: Kube,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kube = kube
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kube.kubeconfig)
        env["NODECLUSTER_SIMULATOR_DIR"] = str(self.workdir / "simulator")
        env.update(self.extra_env)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodecluster", "run", "--verbose", *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
        )

    def kill9(self) -> None:
        """Kill without any chance to clean up, as a node failure would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics_url(self, timeout: float = 60.0) -> str:
        """The URL of this process's metrics endpoint, from the line it logs once bound
        (started with `--metrics-address HOST:0`: a free port, chosen by the system)."""

        def logged() -> str | None:
            if not self.alive():
                raise AssertionError(f"the operator exited:\n{self.log_tail()}")
            found = SERVED_AT.search(self.log_path.read_text(errors="replace"))
            return found.group(1) if found else None

        return wait_for("the operator's metrics endpoint", logged, timeout=timeout)

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """One scrape of the metrics endpoint: (sample name, labels) -> value."""
        with urllib.request.urlopen(self.metrics_url(), timeout=30) as response:
            text = response.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def sample(self, family: str, **labels: str) -> float | None:
        """One sample of a fresh scrape (None when the series does not exist)."""
        return self.scrape().get((family, frozenset(labels.items())))

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def service_account_kube(kube: Kube, account: str, namespace: str, path: Path) -> Kube:
    """A Kube that authenticates as a ServiceAccount: a kubeconfig with a token from the
    TokenRequest API (`kubectl create token`) and the server and CA of `kube`'s own."""
    token = kube.kubectl("create", "token", account, "-n", namespace, "--duration=2h")
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    context_name = admin.get("current-context")
    context = next(c for c in admin["contexts"] if c["name"] == context_name)["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    user = f"system:serviceaccount:{namespace}:{account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return Kube(path, kubectl_bin=kube.kubectl_bin, control_plane=kube.control_plane)
