"""The `kubectl-nodecluster` command line: its verbs, their help, and errors a person
understands (exit status 1 with one line saying what went wrong and what to do, never a
traceback; `plan` exits 2 for "changes", so no usage error may exit 2)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from nodecluster.plugin.style import ColorMode, painter, use_color

DESCRIPTION = """\
Look at and act on NodeClusters, with your own kubeconfig and permissions.

examples:
  kubectl nodecluster plan -f workers.yaml        # what applying it would do (exit 2: changes)
  kubectl nodecluster describe workers            # the cluster as a tree of zones and nodes
  kubectl nodecluster scale-out workers --by 3    # create a ScaleOut operation and wait for it
  kubectl nodecluster remove workers workers-x7k2p workers-b4q9z
  kubectl nodecluster check workers               # ask the provider about every node
  kubectl nodecluster recover workers             # recover the nodes it reports broken
  kubectl nodecluster usage -A --total            # machine-hours and cost

Exit status: 0 done, 1 failed (an error, or an operation that failed or did not end in
time); plan: 0 no change, 2 changes, 1 error.
"""


class PluginError(Exception):
    """A failure the person can act on; its text is all they see."""


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (kubectl's own convention), never 2 (plan's "changes")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser, namespaced: bool = True) -> None:
    if namespaced:
        parser.add_argument(
            "-n", "--namespace", help="the cluster's namespace (default: the context's)"
        )
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    )


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive,
        default=None,
        help="the operation fails if it has not ended this long after it starts (its "
        "spec.timeoutSeconds; default 1800); the plugin waits that long and a minute more",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="create the operation and exit; follow it with kubectl get nco NAME -w",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (on a terminal, unless NO_COLOR is set), always, never",
    )


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return number


def parser() -> argparse.ArgumentParser:
    """The plugin's command line."""
    from nodecluster.cli import USAGE_DESCRIPTION, add_usage_arguments
    from nodecluster.cli_plan import PLAN_DESCRIPTION, add_arguments

    top = Parser(
        prog="kubectl nodecluster",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="verb", required=True, metavar="COMMAND", parser_class=Parser)

    plan = sub.add_parser(
        "plan", help="preview what a changed NodeCluster would do", description=PLAN_DESCRIPTION
    )
    add_arguments(plan)
    plan.set_defaults(run=_plan)

    describe = sub.add_parser(
        "describe",
        help="a cluster as a tree: zones, nodes, their problems; conditions and Events",
        description="Show a NodeCluster as a tree of zones and nodes (state, age, provider "
        "id, Kubernetes Node, problems), then its conditions and its last Events.",
    )
    describe.add_argument("name", metavar="NAME", help="the NodeCluster")
    _common(describe)
    describe.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (on a terminal, unless NO_COLOR is set), always, never",
    )
    describe.set_defaults(run=_describe)

    usage = sub.add_parser(
        "usage",
        help="machine-hours, core-hours and cost per cluster, zone and machine type",
        description=USAGE_DESCRIPTION,
    )
    add_usage_arguments(usage)
    usage.set_defaults(run=_usage)

    scale_out = sub.add_parser(
        "scale-out",
        help="add nodes (a ScaleOut operation), and wait for the cluster to be ready",
        description="Create a ScaleOut NodeClusterOperation and wait for it. COUNT is read "
        "as the cluster's policies.scaling.adjustmentType says: with the default "
        "ChangeInCapacity, the number of nodes to add.",
    )
    scale_in = sub.add_parser(
        "scale-in",
        help="remove nodes (a ScaleIn operation); the deletion policy picks which",
        description="Create a ScaleIn NodeClusterOperation and wait for it. COUNT is read as "
        "the cluster's policies.scaling.adjustmentType says: with the default "
        "ChangeInCapacity, the number of nodes to remove; policies.deletion picks which.",
    )
    for verb in (scale_out, scale_in):
        verb.add_argument("name", metavar="NAME", help="the NodeCluster")
        verb.add_argument(
            "--by", metavar="COUNT", type=_positive, required=True, help="how many nodes"
        )
        _common(verb)
        _wait_options(verb)
    scale_out.set_defaults(run=_operate, verb_name="scale-out")
    scale_in.set_defaults(run=_operate, verb_name="scale-in")

    remove = sub.add_parser(
        "remove",
        help="delete these nodes and lower the target by as many (a RemoveNodes operation)",
        description="Create a RemoveNodes NodeClusterOperation for the nodes named and wait "
        "for it: they are deleted and spec.targetNodes is lowered by as many (refused below "
        "minNodes).",
    )
    remove.add_argument("name", metavar="NAME", help="the NodeCluster")
    remove.add_argument("nodes", metavar="NODE", nargs="+", help="ClusterNode names")
    _common(remove)
    _wait_options(remove)
    remove.set_defaults(run=_operate, verb_name="remove")

    for verb_name, what in (
        ("check", "ask the provider about the nodes; Error results name the broken ones"),
        ("recover", "apply the health policy's recovery to the nodes the provider reports broken"),
    ):
        action = sub.add_parser(
            verb_name,
            help=what + " (every node, or those named)",
            description=f"Create a {verb_name.title()} NodeClusterOperation and wait for it: "
            f"{what}. Without NODE, every node of the cluster.",
        )
        action.add_argument("name", metavar="NAME", help="the NodeCluster")
        action.add_argument("nodes", metavar="NODE", nargs="*", help="only these ClusterNodes")
        _common(action)
        _wait_options(action)
        action.set_defaults(run=_operate, verb_name=verb_name)
    return top


def _kubeconfig(args: argparse.Namespace) -> str | None:
    from nodecluster.cli import kubeconfig_path

    return kubeconfig_path(args.kubeconfig)


def _namespace(args: argparse.Namespace, kubeconfig: str | None) -> str:
    from nodecluster.usagereport import context_namespace

    return str(args.namespace or context_namespace(kubeconfig))


@asynccontextmanager
async def connected(kubeconfig: str | None) -> AsyncIterator[Any]:
    """The user's API client, closed after; every way of failing to talk to the API
    server turned into a PluginError that says what to check."""
    import aiohttp
    from kubernetes_asyncio.config import ConfigException

    from nodecluster.controllers.kube import KubeClient
    from nodecluster.controllers.kubeapi import KubeError

    try:
        client = await KubeClient.connect(max_connections=4, kubeconfig=kubeconfig)
    except (ConfigException, OSError, aiohttp.ClientError) as err:
        where = kubeconfig or "none found"
        raise PluginError(f"cannot load the kubeconfig ({where}): {err}") from None
    try:
        yield client
    except KubeError as err:
        if err.status in (401, 403):
            raise PluginError(
                f"the API server refused the request ({err.status}): your credentials lack a "
                f"permission this command needs (see the README, kubectl plugin). "
                f"{err.message.strip()[:300]}"
            ) from None
        raise PluginError(f"the API server answered {err}") from None
    except (aiohttp.ClientError, OSError) as err:
        raise PluginError(f"cannot reach the API server: {err}") from None
    finally:
        await client.close()


def _plan(args: argparse.Namespace) -> int:
    from nodecluster import cli_plan

    return cli_plan.run(args, _kubeconfig(args))


def _usage(args: argparse.Namespace) -> int:
    from nodecluster.cli import cmd_usage

    return cmd_usage(args)


def _describe(args: argparse.Namespace) -> int:
    from nodecluster.controllers.kubeapi import KubeNotFound
    from nodecluster.plugin.describe import now_utc, read_cluster, render_tree

    kubeconfig = _kubeconfig(args)
    namespace = _namespace(args, kubeconfig)

    async def read() -> Any:
        async with connected(kubeconfig) as api:
            try:
                return await read_cluster(api, namespace, args.name)
            except KubeNotFound:
                raise PluginError(
                    f"NodeCluster {namespace}/{args.name} not found "
                    f"(kubectl get nodeclusters -n {namespace} lists them)"
                ) from None

    facts = _run(read)
    paint = painter(use_color(args.color, sys.stdout))
    sys.stdout.write(render_tree(facts, now_utc(), paint))
    return 0


def _operate(args: argparse.Namespace) -> int:
    from nodecluster.controllers.kubeapi import NODECLUSTERS, OPERATIONS, KubeNotFound
    from nodecluster.plugin.operations import (
        Progress,
        operation_body,
        outcome_lines,
        wait_for_operation,
        wait_seconds_for,
    )

    kubeconfig = _kubeconfig(args)
    namespace = _namespace(args, kubeconfig)
    color: ColorMode = args.color
    paint = painter(use_color(color, sys.stdout))
    body = operation_body(
        args.name,
        namespace,
        args.verb_name,
        count=getattr(args, "by", None),
        nodes=getattr(args, "nodes", None) or (),
        timeout_seconds=args.timeout,
    )

    async def act() -> int:
        async with connected(kubeconfig) as api:
            try:
                await api.get(NODECLUSTERS, namespace, args.name)
            except KubeNotFound:
                raise PluginError(
                    f"NodeCluster {namespace}/{args.name} not found "
                    f"(kubectl get nodeclusters -n {namespace} lists them)"
                ) from None
            created = await api.create(OPERATIONS, namespace, body)
            name = created["metadata"]["name"]
            spec = body["spec"]
            what = spec["action"] + (f" by {spec['count']}" if "count" in spec else "")
            if spec.get("nodes"):
                what += f" of {', '.join(spec['nodes']['names'])}"
            print(f"nodeclusteroperation {namespace}/{name} created ({what})", flush=True)
            if args.no_wait:
                return 0
            tty = use_color(color, sys.stdout) and sys.stdout.isatty()
            outcome = await wait_for_operation(
                api,
                namespace,
                name,
                wait_seconds_for(args.timeout),
                Progress(sys.stdout, tty, paint),
            )
            for line in outcome_lines(outcome, namespace, paint):
                print(line)
            return 0 if outcome.finished and outcome.succeeded else 1

    result: int = _run(act)
    return result


def _run(coroutine: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await coroutine()

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kubectl-nodecluster` console script."""
    args = parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (an operation already created goes on)", file=sys.stderr)
        return 130
    return result
