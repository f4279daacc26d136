"""The `nodecluster-operator` command.

nodecluster-operator run [--namespace NS ...] [--installation-id ID | --installation-name NAME]
                         [--nodes] [--verbose] [--metrics-address HOST:PORT]
                         [--receiver-address HOST:PORT]
                         [--liveness URL] [--peering NAME]
                         [--leader-elect [--lease-name NAME] [--lease-namespace NS]]
nodecluster-operator crds [--write DIR | --check DIR]
nodecluster-operator usage [-n NS | -A] [--provider NAME] [--month | --total] [-o table|json]
nodecluster-operator plan -f CHANGED.yaml [-n NS] [-o text|json]  (exit: 0 same, 2 changes, 1 error)
nodecluster-operator simulator inventory PATH
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import yaml


def _cmd_crds(args: argparse.Namespace) -> int:
    from nodecluster.api.crds import all_crds, crd_files

    if args.write or args.check:
        target = Path(args.write or args.check)
        files = crd_files()
        if args.check:
            drift = [
                n
                for n, text in files.items()
                if not (target / n).is_file() or (target / n).read_text() != text
            ]
            extra = [p.name for p in target.glob("*.yaml") if p.name not in files]
            if drift or extra:
                print(
                    f"CRDs in {target} differ from the models: {sorted(drift + extra)}. "
                    f"Run: nodecluster-operator crds --write {target}",
                    file=sys.stderr,
                )
                return 1
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (target / name).write_text(text)
        for stale in target.glob("*.yaml"):
            if stale.name not in files:
                stale.unlink()
        return 0
    sys.stdout.write(yaml.safe_dump_all(all_crds(), sort_keys=False, width=100))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    # Imported here so that `crds` and `simulator` never load kopf.
    from nodecluster.controllers.handlers import run_operator

    # Either may come from the environment, where argparse's exclusive group cannot see
    # it: given both, neither silently wins.
    installation_id = args.installation_id or _from_env("NODECLUSTER_INSTALLATION_ID")
    installation_name = args.installation_name or _from_env("NODECLUSTER_INSTALLATION_NAME")
    if installation_id and installation_name:
        print(
            "give an installation id or an installation name, not both "
            f"(id {installation_id!r}, name {installation_name!r}; from --installation-id/"
            "NODECLUSTER_INSTALLATION_ID and --installation-name/NODECLUSTER_INSTALLATION_NAME)",
            file=sys.stderr,
        )
        return 2
    metrics_address = args.metrics_address
    if metrics_address is None:
        env = os.environ.get("NODECLUSTER_METRICS_ADDRESS")
        if env:
            try:
                metrics_address = metrics_address_arg(env)
            except argparse.ArgumentTypeError as err:
                raise SystemExit(f"NODECLUSTER_METRICS_ADDRESS: {err}") from None
    receiver_address = args.receiver_address
    if receiver_address is None:
        env = os.environ.get("NODECLUSTER_RECEIVER_ADDRESS")
        if env:
            try:
                receiver_address = metrics_address_arg(env)
            except argparse.ArgumentTypeError as err:
                raise SystemExit(f"NODECLUSTER_RECEIVER_ADDRESS: {err}") from None

    if args.peering and args.leader_elect:
        # kopf's peering would pause a replica that holds the Lease whenever it sees another
        # operator, fenced or not: the Lease alone says who acts.
        print(
            "--peering and --leader-elect do not go together: peering pauses the Lease's "
            "holder while an operator outside the election may act. Use --leader-elect for "
            "replicas, --peering only to debug a single operator",
            file=sys.stderr,
        )
        return 2

    lease = None
    if args.leader_elect:
        from nodecluster.controllers.leader import LeaseSettings, default_identity

        namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE")
        if not namespace:
            print(
                "--leader-elect needs the Lease's namespace: --lease-namespace, or POD_NAMESPACE "
                "(the chart sets it to the release namespace)",
                file=sys.stderr,
            )
            return 2
        try:
            lease = LeaseSettings(
                name=args.lease_name,
                namespace=namespace,
                identity=default_identity(),
                duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        except ValueError as err:
            print(str(err), file=sys.stderr)
            return 2
    run_operator(
        namespaces=list(args.namespace or []),
        liveness=args.liveness,
        peering=args.peering,
        verbose=args.verbose,
        debug=args.debug,
        installation_id=installation_id,
        installation_name=installation_name or "default",
        nodes=args.nodes,
        lease=lease,
        metrics_address=metrics_address,
        receiver_address=receiver_address,
    )
    return 0


def _from_env(variable: str) -> str | None:
    """An installation id or name from the environment, checked as the flags are."""
    value = os.environ.get(variable)
    if not value:
        return None
    try:
        return installation_id(value)
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"{variable}: {err}") from None


def kubeconfig_path(flag: str | None) -> str | None:
    """The kubeconfig file a command reads, as kubectl finds it: the flag, KUBECONFIG (its
    first file), ~/.kube/config; None: none (in-cluster)."""
    kubeconfig = flag or os.environ.get("KUBECONFIG") or None
    if kubeconfig is None and Path("~/.kube/config").expanduser().is_file():
        kubeconfig = str(Path("~/.kube/config").expanduser())
    if kubeconfig is not None and os.pathsep in kubeconfig:
        kubeconfig = kubeconfig.split(os.pathsep)[0]  # (the first file, as the client reads)
    return kubeconfig


def cmd_usage(args: argparse.Namespace) -> int:
    import asyncio

    from nodecluster.usagereport import context_namespace, run_usage

    kubeconfig = kubeconfig_path(args.kubeconfig)
    namespace = None if args.all_namespaces else args.namespace or context_namespace(kubeconfig)
    text = asyncio.run(
        run_usage(
            kubeconfig, namespace, "total" if args.total else "month", args.output, args.provider
        )
    )
    sys.stdout.write(text)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from nodecluster import cli_plan

    return cli_plan.run(args, kubeconfig_path(args.kubeconfig))


def _cmd_inventory(args: argparse.Namespace) -> int:
    from nodecluster.providers.simulator import inventory_rows

    json.dump(inventory_rows(Path(args.path)), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _cmd_fail(args: argparse.Namespace) -> int:
    from nodecluster.providers.simulator import Inventory

    inventory = Inventory(Path(args.path))
    try:
        missing = [name for name in args.names if not inventory.set_failed(name)]
    finally:
        inventory.close()
    if missing:
        print(f"no such machines: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


INSTALLATION_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
"""A label value: it goes into every machine's tags, where clouds allow little else."""


def installation_id(value: str) -> str:
    """An installation id as `run` takes it."""
    if not INSTALLATION_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-63 letters, digits, '.', '_' or '-', starting and ending with a "
            "letter or digit"
        )
    return value


def metrics_address_arg(value: str) -> str:
    """A metrics address as `run` takes it: HOST:PORT."""
    from nodecluster.controllers.metrics import parse_address

    try:
        parse_address(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


class Parser(argparse.ArgumentParser):
    """argparse's parser, with the exit status of a usage error settable: `plan` says 2
    for "changes", so its usage errors must not say 2 too."""

    usage_error_status = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_error_status, f"{self.prog}: error: {message}\n")


USAGE_DESCRIPTION = (
    "What NodeClusters have used, from their status.usage brought up to now: per cluster, "
    "zone and machine type, the machines billing now, machine-hours, core-hours and cost "
    "(in the unit of the NodeProvider buckets' hourlyCost), and the totals."
)


def add_usage_arguments(usage: argparse.ArgumentParser) -> None:
    """The options of `usage` (also `kubectl nodecluster usage`)."""
    scope = usage.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    usage.add_argument("--provider", metavar="NAME", help="only clusters of this NodeProvider")
    period = usage.add_mutually_exclusive_group()
    period.add_argument(
        "--month", action="store_true", help="the current calendar month, UTC (the default)"
    )
    period.add_argument("--total", action="store_true", help="since each cluster was created")
    usage.add_argument("-o", "--output", choices=("table", "json"), default="table")
    usage.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    )


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    top = Parser(
        prog="nodecluster-operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser(
        "run", help="run the operator against the current kubeconfig or in-cluster"
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable; globs allowed); default: all namespaces",
    )
    which = run.add_mutually_exclusive_group()
    which.add_argument(
        "--installation-id",
        metavar="ID",
        default=None,
        type=installation_id,
        help="which installation this is: tags every machine, and only machines with this "
        "id are collected as orphans; never change it while it has machines "
        "(env NODECLUSTER_INSTALLATION_ID; default: NAME.<8 hex naming this Kubernetes "
        "cluster>, from --installation-name and the uid of the kube-system Namespace)",
    )
    which.add_argument(
        "--installation-name",
        metavar="NAME",
        default=None,
        type=installation_id,
        help="without --installation-id, the id is NAME followed by 8 hex digits naming the "
        "Kubernetes cluster, so two clusters sharing a cloud account never share an id "
        "(env NODECLUSTER_INSTALLATION_NAME; default: default)",
    )
    run.add_argument(
        "--nodes",
        action="store_true",
        help="Node integration: watch Kubernetes Nodes, link each to its machine by "
        "spec.providerID, keep the profile's Node labels and taints on it, drain it before "
        "its machine is deleted (needs get/list/watch/patch/delete on nodes, list on pods, "
        "create on pods/eviction)",
    )
    run.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=None,
        type=metrics_address_arg,
        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:8080 "
        "(port 0: any free port; the address bound is logged) (env "
        "NODECLUSTER_METRICS_ADDRESS; default: no endpoint)",
    )
    run.add_argument(
        "--receiver-address",
        metavar="HOST:PORT",
        default=None,
        type=metrics_address_arg,
        help="serve the NodeClusterReceivers' endpoint at http://HOST:PORT/receivers/NS/NAME "
        "and watch NodeClusterReceivers (port 0: any free port; the address bound is logged) "
        "(env NODECLUSTER_RECEIVER_ADDRESS; default: no endpoint, receivers not served)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log each reconcile")
    run.add_argument("--debug", action="store_true", help="log kopf internals too")
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve a health endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="pause while a kopf peering object names an operator of higher priority (for "
        "debugging; needs kopf's peering CRDs; not with --leader-elect)",
    )
    elect = run.add_argument_group(
        "leader election",
        "replicas take turns on a coordination.k8s.io/v1 Lease: one acts, the others stand "
        "by and take over when it stops renewing the Lease",
    )
    elect.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding the Lease (needs get, create and patch on leases "
        "in its namespace)",
    )
    elect.add_argument(
        "--lease-name", metavar="NAME", default="nodecluster-operator", help="the Lease's name"
    )
    elect.add_argument(
        "--lease-namespace",
        metavar="NS",
        default=None,
        help="the Lease's namespace (default: env POD_NAMESPACE)",
    )
    elect.add_argument(
        "--lease-duration",
        metavar="SECONDS",
        type=float,
        default=15.0,
        help="a standby takes over when the Lease was not renewed for this long (15)",
    )
    elect.add_argument(
        "--renew-deadline",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="the leader stops (exits) when it could not renew for this long (10)",
    )
    elect.add_argument(
        "--retry-period",
        metavar="SECONDS",
        type=float,
        default=2.0,
        help="how often the leader renews and a standby tries (2)",
    )
    run.set_defaults(func=_cmd_run)

    crds = sub.add_parser("crds", help="print the CRDs generated from the API models")
    group = crds.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR", help="write one file per CRD into DIR")
    group.add_argument("--check", metavar="DIR", help="exit 1 if DIR differs from the models")
    crds.set_defaults(func=_cmd_crds)

    usage = sub.add_parser(
        "usage",
        help="machine-hours, core-hours and estimated cost per cluster, zone and machine type",
        description=USAGE_DESCRIPTION,
    )
    add_usage_arguments(usage)
    usage.set_defaults(func=cmd_usage)

    from nodecluster.cli_plan import PLAN_DESCRIPTION, add_arguments

    plan = sub.add_parser(
        "plan",
        help="preview what a changed NodeCluster would make the operator do (read-only)",
        description=PLAN_DESCRIPTION,
    )
    assert isinstance(plan, Parser)
    plan.usage_error_status = 1
    add_arguments(plan)
    plan.set_defaults(func=_cmd_plan)

    sim = sub.add_parser("simulator", help="inspect the simulator provider's inventory")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    inv = sim_sub.add_parser("inventory", help="print every machine in a simulator file as JSON")
    inv.add_argument("path", help="the SQLite file (config.path of the NodeProvider)")
    inv.set_defaults(func=_cmd_inventory)
    fail = sim_sub.add_parser("fail", help="break machines, to watch health remediation work")
    fail.add_argument("path", help="the SQLite file (config.path of the NodeProvider)")
    fail.add_argument(
        "names", nargs="+", help="machine names, or the names of the ClusterNodes they belong to"
    )
    fail.set_defaults(func=_cmd_fail)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result
