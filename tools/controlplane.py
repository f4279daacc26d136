#!/usr/bin/env python3
"""Run a real, throw-away Kubernetes control plane on this machine.

Why this exists: the machines this project runs on have no Docker, so kind is out, and they
cannot download envtest's prebuilt binaries either. ``tools/build-control-plane`` therefore
builds etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules, and this
module starts those real components here, on free loopback ports, with a freshly generated
PKI. The e2e pytest fixtures and the "run the operator locally" command share it, so both talk
to the same kind of cluster: RBAC on, ServiceAccount tokens through the TokenRequest API, the
controller manager running (namespaces get their ``default`` ServiceAccount, garbage
collection works) and an audit log of every write for tests that count API calls.

There are no nodes and no kubelet: Pods are stored but never run. That is all an operator
needs; kwok can fake nodes on top when a test wants them.

Only the standard library (plus PyYAML) and the ``openssl`` command are used, so the module
works straight from a checkout without installing anything.

Usage as a command::

    python tools/controlplane.py up [--print-timing] [--crd FILE ...]

Usage from Python::

    with ControlPlane() as cp:
        cp.apply_crds(["crds/nodecluster.yaml"])
        cp.kubectl("get", "ns")
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

import yaml

__all__ = ["ControlPlane", "ControlPlaneError", "KubectlError", "default_bin_dir", "main"]

TOOLS_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = TOOLS_DIR / "build-control-plane"

LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range: the ClusterIP the apiserver gives to the
# ``kubernetes`` Service, so in-cluster clients that dial it must find it in the cert.
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

POLL_INTERVAL = 0.1
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 40

# Writes only, and one event per request (the RequestReceived stage would log each write
# twice): tests read this file to count the operator's writes, so it should hold nothing else.
AUDIT_POLICY: dict[str, object] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
        },
        {"level": "None"},
    ],
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (the message carries the component's log tail)."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message, unlike CalledProcessError's, includes stderr.

    Why: a failing test then shows kubectl's own explanation instead of only an exit code.
    """

    def __str__(self) -> str:
        detail = (self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}\n{detail}" if detail else super().__str__()


class _PortInUse(ControlPlaneError):
    """A component lost the race for its port; start() retries with new ports."""


# A readiness check: (passed, what it saw), the latter quoted when the wait times out.
_Probe = Callable[[], tuple[bool, str]]


@dataclass
class _Component:
    """One running binary: its process, its log file and the handle we write that log with."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free loopback ports, chosen by the kernel (bind to port 0).

    All sockets stay open until every port is chosen, so the kernel cannot hand out the same
    port twice. Another process may still grab one before our component binds it; start()
    retries with new ports when a component reports the address in use.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, or a note when there is none yet."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def default_bin_dir() -> Path:
    """Build the binaries if needed (progress on stderr) and return the directory holding them.

    The build script is idempotent and prints the directory as its last stdout line.
    """
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed with exit code {proc.returncode} (its stderr is above)"
        )
    return Path(lines[-1].strip())


class _Pki:
    """A throw-away PKI made with the openssl CLI (no Python crypto package is needed).

    EC P-256 keys everywhere: generating them takes milliseconds, and every component accepts
    them, the service-account token signer included (ES256).
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_crt = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.apiserver_crt = directory / "apiserver.crt"
        self.apiserver_key = directory / "apiserver.key"
        self.admin_crt = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.kcm_crt = directory / "kube-controller-manager.crt"
        self.kcm_key = directory / "kube-controller-manager.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def generate(self) -> None:
        """Write the CA, the serving cert, the client certs and the SA signing key pair."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key(self.ca_key)
        ca_cnf = self._write(
            "ca.cnf",
            "[req]\ndistinguished_name = dn\n[dn]\n[v3]\n"
            "basicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
            "subjectKeyIdentifier = hash\n",
        )
        self._openssl(
            "req", "-x509", "-new", "-key", self.ca_key, "-subj", "/CN=nodecluster-local-ca",
            "-days", "3650", "-config", ca_cnf, "-extensions", "v3", "-out", self.ca_crt,
        )  # fmt: skip
        sans = ",".join(
            [
                f"IP:{LOOPBACK}",
                f"IP:{KUBERNETES_SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        self._leaf(
            "apiserver", self.apiserver_crt, self.apiserver_key, "/CN=kube-apiserver",
            usage="serverAuth", sans=sans,
        )  # fmt: skip
        self._leaf(
            "admin", self.admin_crt, self.admin_key, "/O=system:masters/CN=admin",
            usage="clientAuth",
        )  # fmt: skip
        self._leaf(
            "kube-controller-manager", self.kcm_crt, self.kcm_key,
            "/CN=system:kube-controller-manager", usage="clientAuth",
        )  # fmt: skip
        self._key(self.sa_key)
        self._openssl("pkey", "-in", self.sa_key, "-pubout", "-out", self.sa_pub)

    def _leaf(
        self, name: str, crt: Path, key: Path, subject: str, *, usage: str, sans: str = ""
    ) -> None:
        self._key(key)
        csr = self.dir / f"{name}.csr"
        ext = (
            "[v3]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage = {usage}\nauthorityKeyIdentifier = keyid\n"
        )
        if sans:
            ext += f"subjectAltName = {sans}\n"
        ext_file = self._write(f"{name}.ext", ext)
        req_cnf = self._write("req.cnf", "[req]\ndistinguished_name = dn\n[dn]\n")
        self._openssl(
            "req", "-new", "-key", key, "-subj", subject, "-config", req_cnf, "-out", csr
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
            "-set_serial", str(secrets.randbits(63)), "-days", "365",
            "-extfile", ext_file, "-extensions", "v3", "-out", crt,
        )  # fmt: skip

    def _key(self, path: Path) -> None:
        self._openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path
        )  # fmt: skip
        path.chmod(0o600)

    def _write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    @staticmethod
    def _openssl(*args: str | Path) -> None:
        # OPENSSL_CONF=/dev/null: the system openssl.cnf must not add extensions of its own.
        env = {**os.environ, "OPENSSL_CONF": os.devnull}
        proc = subprocess.run(
            ["openssl", *map(str, args)], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


# Control planes that are running; the atexit hook stops whatever is still in here.
_RUNNING: set[ControlPlane] = set()
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """Fallback for callers that never reach stop(): leave no etcd or apiserver behind."""
    with _RUNNING_LOCK:
        planes = list(_RUNNING)
    for plane in planes:
        plane.stop()


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager, started and stopped as one unit.

    Use it as a context manager, or call start() and stop(). Everything it writes (PKI,
    kubeconfigs, etcd data, component logs, the audit log) goes under ``work_dir``.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = 120.0,
        keep_work_dir: bool = False,
    ) -> None:
        """Prepare, but do not start, a control plane.

        work_dir: where files go; default a fresh temp dir, removed by stop() unless
            keep_work_dir is set or startup failed (its logs are then the evidence).
            A directory the caller names is never removed.
        bin_dir: the directory holding the binaries; default: run tools/build-control-plane,
            which builds them when missing.
        startup_timeout: seconds start() may take before it gives up.
        """
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(
            tempfile.mkdtemp(prefix="nodecluster-cp-") if work_dir is None else work_dir
        ).resolve()
        self.bin_dir = Path(bin_dir).resolve() if bin_dir is not None else default_bin_dir()
        self.startup_timeout = startup_timeout
        self.keep_work_dir = keep_work_dir

        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.audit_log = self.work_dir / "audit.log"
        self.pki = _Pki(self.work_dir / "pki")
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds: float | None = None

        self._components: list[_Component] = []
        self._apiserver_port = 0
        self._lock = threading.RLock()
        self._started = False
        self._failed = False

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public API --------------------------------------------------------------------------

    @property
    def kubectl_bin(self) -> Path:
        """The kubectl built alongside the control plane (same version as the apiserver)."""
        return self.bin_dir / "kubectl"

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG and the bin dir on PATH, for tools run against us."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def start(self) -> ControlPlane:
        """Start all components and return once the cluster is usable.

        Usable means: the apiserver's /readyz passes and the ``default`` ServiceAccount exists
        in namespace ``default`` (so the controller manager runs and syncs). On any failure,
        Ctrl-C included, whatever was started is stopped before the exception propagates.
        """
        with self._lock:
            if self._started:
                raise ControlPlaneError("control plane already started")
            self._started = True
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        began = time.monotonic()
        deadline = began + self.startup_timeout
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.pki.generate()
            self._write_audit_policy()
            for attempt in range(3):
                try:
                    self._start_components(deadline)
                    break
                except _PortInUse:
                    # Another process took a port between our probe and the component's bind.
                    self._stop_components()
                    if attempt == 2:
                        raise
        except BaseException as exc:
            # Keep the logs of a real failure for the post-mortem; Ctrl-C is no failure.
            self._failed = not isinstance(exc, KeyboardInterrupt)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after a grace period); idempotent.

        Safe to call from an atexit hook, a signal handler's unwinding or a finally block.
        """
        with self._lock:
            self._stop_components()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            if (
                self._owns_work_dir
                and not self.keep_work_dir
                and not self._failed
                and self.work_dir.exists()
            ):
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart_apiserver(self, downtime: float = 0.0, *, timeout: float = 60.0) -> None:
        """Kill kube-apiserver (SIGKILL, as a crash would) and start it again on the same port.

        For fault-injection tests: clients see their watches break and requests fail for
        `downtime` seconds plus the restart, exactly as during an apiserver upgrade or crash.
        etcd keeps the data, so nothing is lost on the server side.
        """
        with self._lock:
            old = next(c for c in self._components if c.name == "kube-apiserver")
            old.process.kill()
            old.process.wait(timeout=STOP_GRACE_SECONDS)
            old.log_file.close()
            old.log_path.replace(old.log_path.with_suffix(f".{int(time.time())}.log"))
            index = self._components.index(old)
            self._components.remove(old)
            if downtime > 0:
                time.sleep(downtime)  # the outage itself, not a wait for anything
            fresh = self._spawn("kube-apiserver", self._apiserver_args(self._apiserver_port))
            self._components.remove(fresh)
            self._components.insert(index, fresh)
            self._wait_until(
                fresh, time.monotonic() + timeout, "kube-apiserver /readyz", self._apiserver_ready
            )

    def check_alive(self) -> None:
        """Raise ControlPlaneError, with the component's log tail, if any component exited.

        Why: a test that fails because etcd or the apiserver died should say so, not time out.
        """
        exited = self._exited_component()
        if exited is not None:
            component, code = exited
            raise ControlPlaneError(_exit_message(component, code, "while running"))

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl with the admin kubeconfig and capture its output as text.

        With check=True a non-zero exit raises KubectlError, whose message includes stderr.
        """
        cmd = [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def apply_crds(self, paths: Iterable[str | os.PathLike[str]], *, timeout: float = 60.0) -> None:
        """Apply CRD manifests (server-side) and wait until every CRD is Established.

        Why wait: custom resources of a CRD are rejected until it is Established, so a test
        that creates one right after applying would otherwise fail now and then.
        """
        files = [arg for path in paths for arg in ("-f", str(path))]
        if not files:
            return
        self.kubectl("apply", "--server-side", *files)
        self.kubectl(
            "wait", "--for", "condition=established", f"--timeout={timeout:g}s", *files,
            timeout=timeout + 30,
        )  # fmt: skip

    # -- startup -----------------------------------------------------------------------------

    def _write_audit_policy(self) -> None:
        (self.work_dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

    def _start_components(self, deadline: float) -> None:
        # A fresh store and audit log on every attempt: data left by an earlier attempt or by
        # an earlier run in the same work dir belongs to another PKI and other ports.
        shutil.rmtree(self.work_dir / "etcd", ignore_errors=True)
        self.audit_log.unlink(missing_ok=True)
        etcd_client, etcd_peer, apiserver_port = _free_ports(3)
        self.etcd_url = f"http://{LOOPBACK}:{etcd_client}"
        self.server = f"https://{LOOPBACK}:{apiserver_port}"
        self._write_kubeconfig(self.kubeconfig, "admin", self.pki.admin_crt, self.pki.admin_key)
        kcm_kubeconfig = self.work_dir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(
            kcm_kubeconfig, "system:kube-controller-manager", self.pki.kcm_crt, self.pki.kcm_key
        )

        etcd = self._spawn("etcd", self._etcd_args(etcd_client, etcd_peer))
        self._wait_until(etcd, deadline, "etcd /health", self._etcd_healthy)
        self._apiserver_port = apiserver_port
        apiserver = self._spawn("kube-apiserver", self._apiserver_args(apiserver_port))
        self._wait_until(apiserver, deadline, "kube-apiserver /readyz", self._apiserver_ready)
        # Started only now: it exits if the apiserver is not healthy within a few seconds.
        kcm = self._spawn("kube-controller-manager", self._kcm_args(kcm_kubeconfig))
        self._wait_until(
            kcm, deadline, "ServiceAccount default/default", self._default_service_account
        )

    def _etcd_args(self, client_port: int, peer_port: int) -> list[str]:
        client = f"http://{LOOPBACK}:{client_port}"
        peer = f"http://{LOOPBACK}:{peer_port}"
        return [
            "--name=nodecluster",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            # The peer URL defaults to localhost:2380; a second control plane would clash.
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=nodecluster={peer}",
            # Throw-away data: skipping fsync makes every write much faster on slow disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, port: int) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={pki.dir}",
            f"--tls-cert-file={pki.apiserver_crt}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_crt}",
            "--authorization-mode=Node,RBAC",
            # Added to the default plugins (the flag only adds to them), as OpenShift and other
            # hardened clusters do: setting blockOwnerDeletion on an ownerReference then needs
            # `update` on the owner's `finalizers` subresource, so the operator's RBAC is
            # tested against the stricter admission, not only the upstream default.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--audit-policy-file={self.work_dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-maxsize=0",
            # Required: with the default (lease) reconciler, v1.37 exits at startup because the
            # advertise address "may not be in the loopback range". Nothing runs in-cluster, so
            # no one needs the endpoints of the ``kubernetes`` Service.
            "--endpoint-reconciler-type=none",
        ]

    def _kcm_args(self, kubeconfig: Path) -> list[str]:
        pki = self.pki
        return [
            f"--kubeconfig={kubeconfig}",
            "--controllers=*",
            "--leader-elect=false",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_crt}",
            f"--cluster-signing-cert-file={pki.ca_crt}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # With per-controller credentials, startup makes ~3 requests per controller (get or
            # create its ServiceAccount, request a token); the default client limit of 20 QPS
            # alone then costs ~5 s before the ServiceAccount controller even starts.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            # Nothing needs its own HTTPS endpoint; port 0 keeps it off 0.0.0.0:10257.
            f"--bind-address={LOOPBACK}",
            "--secure-port=0",
        ]

    def _write_kubeconfig(self, path: Path, user: str, crt: Path, key: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_crt),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _spawn(self, name: str, args: Sequence[str]) -> _Component:
        """Start one binary in its own process group, its output going to <name>.log.

        Own process group (new session): a terminal's Ctrl-C reaches only us, so we stop the
        components in order, and killpg() takes any helper they spawned along. Where setpriv
        exists, the kernel also kills the component if we die without cleaning up (SIGKILL);
        only from the main thread, because the death signal follows the thread that forked.
        """
        log_path = self.work_dir / f"{name}.log"
        log_file = log_path.open("wb")
        cmd = [str(self.bin_dir / name), *args]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            cmd = [setpriv, "--pdeathsig", "KILL", "--", *cmd]
        try:
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,
            )
        except BaseException:
            log_file.close()
            raise
        component = _Component(name, process, log_path, log_file)
        self._components.append(component)
        return component

    def _wait_until(self, component: _Component, deadline: float, what: str, probe: _Probe) -> None:
        """Poll ``probe`` until it passes; fail early if any component exits meanwhile."""
        last_error = ""
        while True:
            exited = self._exited_component()
            if exited is not None:
                c, code = exited
                if "address already in use" in _tail(c.log_path):
                    raise _PortInUse(c.name)
                raise ControlPlaneError(_exit_message(c, code, f"while waiting for {what}"))
            ok, last_error = probe()
            if ok:
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneError(
                    f"timed out waiting for {what} (last check: {last_error}); "
                    f"last lines of {component.log_path}:\n{_tail(component.log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def _exited_component(self) -> tuple[_Component, int] | None:
        for component in self._components:
            code = component.process.poll()
            if code is not None:
                return component, code
        return None

    # -- probes: (passed, why not) ------------------------------------------------------------

    def _etcd_healthy(self) -> tuple[bool, str]:
        status, body = _http_get(f"{self.etcd_url}/health", None)
        return status == 200 and '"true"' in body, f"{status} {body.strip()}"

    def _apiserver_ready(self) -> tuple[bool, str]:
        status, body = _http_get(f"{self.server}/readyz?verbose", self._tls_context())
        failing = [line for line in body.splitlines() if "failed" in line]
        return status == 200, f"{status} {'; '.join(failing) or body.strip()[-300:]}"

    def _default_service_account(self) -> tuple[bool, str]:
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        status, body = _http_get(url, self._tls_context())
        return status == 200, f"{status} {body.strip()[-300:]}"

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    # -- teardown ----------------------------------------------------------------------------

    def _stop_components(self) -> None:
        """Stop in reverse start order, so no component logs errors about a missing peer."""
        while self._components:
            component = self._components.pop()
            try:
                _terminate(component.process, STOP_GRACE_SECONDS)
            finally:
                component.log_file.close()


def _exit_message(component: _Component, code: int, when: str) -> str:
    return (
        f"{component.name} exited with code {code} {when}; "
        f"last lines of {component.log_path}:\n{_tail(component.log_path)}"
    )


def _http_get(url: str, context: ssl.SSLContext | None) -> tuple[int, str]:
    """GET a URL; return (status, body), with status 0 when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as err:
        return 0, str(err)


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it if it outlives ``grace`` seconds, then reap."""
    if process.poll() is not None:
        return
    # start_new_session=True made the component its own process-group leader: pgid == pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- command line ------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM / SIGHUP take the same path as Ctrl-C, so teardown runs in ``finally``."""
    raise KeyboardInterrupt


def _up(args: argparse.Namespace) -> int:
    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Python then
    # leaves it ignored, so `kill -INT` (or Ctrl-C after `fg`) would otherwise do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)
    plane = ControlPlane(args.work_dir, args.bin_dir, keep_work_dir=args.keep_work_dir)
    try:
        plane.start()
        if args.crd:
            plane.apply_crds(args.crd)
        print(f"kubeconfig: {plane.kubeconfig}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        if args.print_timing:
            print(f"startup: {plane.startup_seconds:.2f} s")
        print(f"logs: {plane.work_dir}  (Ctrl-C stops the control plane)", flush=True)
        while True:
            try:
                plane.check_alive()
            except ControlPlaneError:
                plane.keep_work_dir = True  # the logs explain what happened
                raise
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping control plane", file=sys.stderr)
        return 130
    finally:
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python tools/controlplane.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and keep it running until Ctrl-C")
    up.add_argument("--work-dir", type=Path, help="default: a fresh temp dir, removed on exit")
    up.add_argument("--bin-dir", type=Path, help="default: from tools/build-control-plane")
    up.add_argument("--keep-work-dir", action="store_true", help="keep the temp dir on exit")
    up.add_argument("--crd", action="append", default=[], help="CRD file to apply (repeatable)")
    up.add_argument("--print-timing", action="store_true", help="print the startup seconds")
    args = parser.parse_args(argv)
    try:
        return _up(args)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
