#!/usr/bin/env python3
"""Run the operator and watch a sample cluster converge: the README's "run" command.

It uses the cluster of the current kubeconfig when one answers. When none does (the
usual case on a laptop or CI machine without a cluster), it starts the local control
plane (tools/controlplane.py), building it first if needed. Then it installs the CRDs,
applies a sample NodeProvider and the sample NodeCluster, starts the operator, and
prints `kubectl get nodeproviders,nodeclusters,clusternodes` whenever it changes.

    tools/run                     # until Ctrl-C
    tools/run --once              # exit 0 once the sample is Deployed (exit 1 on timeout)
    tools/run --no-samples        # just the operator
    tools/run --provider kwok     # machines are fake Nodes: `kubectl get nodes` shows them
    tools/run --metrics-address 127.0.0.1:8080   # the metrics endpoint on a port of your choice

With `--provider kwok` it also starts kwok (tools/kwok.py: the driver's stages, managing
only the driver's fake Nodes) against the same API server, applies the sample kwok
NodeProvider instead of the simulator's, and prints `kubectl get nodes` as well; `--once`
then also waits until every machine's Node is Ready. Against a cluster of your own the
Nodes stay after the run (delete the NodeCluster first to remove them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from controlplane import ControlPlane, default_bin_dir  # noqa: E402
from kwok import KwokError, KwokProcess, find_binary  # noqa: E402


def say(message: str) -> None:
    print(f"[run {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def reachable(kubectl: str, kubeconfig: str | None) -> bool:
    """Whether the kubeconfig points at an API server that answers."""
    cmd = [kubectl] + (["--kubeconfig", kubeconfig] if kubeconfig else [])
    cmd += ["get", "--raw", "/readyz", "--request-timeout=5s"]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=15, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def cluster(args: argparse.Namespace, state: Path) -> Iterator[tuple[str, str, Path | None]]:
    """(kubeconfig, kubectl, the local binaries' directory or None) of the cluster to use; a
    local one when none answers."""
    configured = args.kubeconfig or os.environ.get("KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    if configured is None and default.is_file():
        configured = str(default)
    system_kubectl = shutil.which("kubectl")
    if configured and system_kubectl and reachable(system_kubectl, configured):
        say(f"using the cluster of {configured}")
        yield configured, system_kubectl, None
        return
    if configured:
        say(f"{configured} does not reach a cluster; starting the local control plane")
    else:
        say("no cluster configured; starting the local control plane")
    bin_dir = default_bin_dir()
    with ControlPlane(work_dir=state / "controlplane", bin_dir=bin_dir) as cp:
        say(f"control plane ready in {cp.startup_seconds:.1f}s: export KUBECONFIG={cp.kubeconfig}")
        yield str(cp.kubeconfig), str(cp.kubectl_bin), bin_dir


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--kubeconfig", help="use this kubeconfig (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument(
        "--no-samples", action="store_true", help="do not apply the sample manifests"
    )
    parser.add_argument(
        "--once", action="store_true", help="exit once the sample NodeCluster is Deployed"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="with --once: seconds to wait")
    parser.add_argument(
        "--provider",
        choices=("simulator", "kwok"),
        default="simulator",
        help="the sample NodeProvider's driver (kwok: fake Nodes, kwok started too)",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="the operator's Prometheus endpoint (default: a free port of the loopback, "
        "printed once bound)",
    )
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="nodecluster-run-"))
    with cluster(args, state) as (kubeconfig, kubectl, bin_dir), contextlib.ExitStack() as stack:

        def k(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, *argv],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
            )

        say("installing the CRDs")
        crd_args = [a for p in sorted((ROOT / "crds").glob("*.yaml")) for a in ("-f", str(p))]
        for step in (
            ("apply", "--server-side", "--force-conflicts", *crd_args),
            ("wait", "--for=condition=established", "--timeout=60s", *crd_args),
        ):
            done = k(*step)
            if done.returncode != 0:
                say(done.stderr.strip())
                return 1

        kwok: KwokProcess | None = None
        if args.provider == "kwok":
            binary = bin_dir / "kwok" if bin_dir is not None else find_binary()
            kwok = KwokProcess(kubeconfig, state / "kwok.log", binary=binary)
            say(f"starting kwok, the fake Nodes' kubelet (log: {kwok.log_path})")
            try:
                stack.enter_context(kwok)
            except KwokError as err:
                say(str(err))
                return 1

        log_path = state / "operator.log"
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "NODECLUSTER_SIMULATOR_DIR": str(state / "simulator"),
        }
        say(f"starting the operator (log: {log_path})")
        with log_path.open("wb") as log:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nodecluster",
                    "run",
                    "--verbose",
                    "--metrics-address",
                    args.metrics_address,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            say_metrics_url(log_path, operator)
            if not args.no_samples:
                provider = yaml.safe_load(
                    (ROOT / f"manifests/samples/nodeprovider-{args.provider}.yaml").read_text()
                )
                if args.provider == "simulator":
                    provider["spec"]["config"]["path"] = str(state / "simulator.db")
                    say(f"applying the samples (simulator inventory: {state / 'simulator.db'})")
                else:
                    say("applying the samples (machines: Nodes, see kubectl get nodes)")
                workers = yaml.safe_load(
                    (ROOT / "manifests/samples/nodecluster-basic.yaml").read_text()
                )
                workers["spec"]["providerRef"]["name"] = provider["metadata"]["name"]
                applied = k("apply", "-f", "-", stdin=yaml.safe_dump(provider))
                applied2 = k("apply", "-n", "default", "-f", "-", stdin=yaml.safe_dump(workers))
                for done in (applied, applied2):
                    if done.returncode != 0:
                        say(done.stderr.strip())
                        return 1
            return watch(k, operator, args, kwok)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
                operator.wait()
            say("operator stopped")


SERVED_AT = re.compile(r"Metrics served at (http://\S+/metrics)")
"""The line the operator logs once its metrics endpoint is bound."""


def say_metrics_url(log_path: Path, operator: subprocess.Popen[bytes]) -> None:
    """Say where the operator serves its metrics, from the line it logs first thing."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and operator.poll() is None:
        found = SERVED_AT.search(log_path.read_text(errors="replace"))
        if found:
            say(f"metrics: curl -s {found.group(1)}")
            return
        time.sleep(0.2)
    say(f"the operator logged no metrics endpoint; see {log_path}")


def watch(  # type: ignore[no-untyped-def]
    k, operator: subprocess.Popen[bytes], args: argparse.Namespace, kwok: KwokProcess | None
) -> int:
    """Print the objects whenever they change; with --once, stop when the sample is Deployed
    (and, with kwok, its Nodes are Ready)."""
    deadline = time.monotonic() + args.timeout
    last = ""
    try:
        while True:
            if operator.poll() is not None:
                say(f"the operator exited with {operator.returncode}")
                return 1
            if kwok is not None:
                try:
                    kwok.check_alive()
                except KwokError as err:
                    say(str(err))
                    return 1
            shown = k("get", "nodeproviders,nodeclusters,clusternodes", "-A").stdout
            if kwok is not None:
                shown += "\n" + k("get", "nodes", "-L", "topology.kubernetes.io/zone").stdout
            if shown != last:
                print(f"--- {time.strftime('%H:%M:%S')}\n{shown}", flush=True)
                last = shown
            if args.once and not args.no_samples:
                state = k(
                    "get",
                    "nodecluster",
                    "workers",
                    "-n",
                    "default",
                    "-o",
                    "jsonpath={.status.state}/{.status.readyNodes}",
                ).stdout
                if state.startswith("Deployed/") and nodes_ready(k, kwok, state):
                    say(f"sample NodeCluster converged: {state}")
                    return 0
                if time.monotonic() > deadline:
                    say(f"timed out; last state {state!r}")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def nodes_ready(k, kwok: KwokProcess | None, state: str) -> bool:  # type: ignore[no-untyped-def]
    """Without kwok, True; with it, whether `kubectl get nodes` shows as many Ready Nodes of
    the sample provider as the NodeCluster has ready nodes."""
    if kwok is None:
        return True
    ready = int(state.partition("/")[2] or 0)
    lines = k("get", "nodes", "--no-headers", "-l", "nodecluster.io/provider=kwok").stdout
    shown = [line.split() for line in lines.splitlines() if line.strip()]
    return len(shown) == ready and all(line[1] == "Ready" for line in shown)


if __name__ == "__main__":
    raise SystemExit(main())
