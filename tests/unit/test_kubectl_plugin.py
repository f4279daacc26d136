"""The kubectl plugin's parts that need no API server: the describe tree, colour only
where a person reads it, the operations its verbs create, the progress of a wait, and
errors that exit 1 with one line. tests/e2e/test_plugin.py runs it through kubectl against
a real API server and the operator."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nodecluster.api.clusternode import ClusterNode
from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.operation import NodeClusterOperation
from nodecluster.controllers.kube import KubeClient
from nodecluster.controllers.kubeapi import CLUSTERNODES, NODECLUSTERS, OPERATIONS
from nodecluster.plugin import command
from nodecluster.plugin.describe import ClusterFacts, age, read_cluster, render_tree
from nodecluster.plugin.operations import (
    Outcome,
    Progress,
    operation_body,
    outcome_lines,
    wait_for_operation,
)
from nodecluster.plugin.style import painter, use_color
from nodecluster.testing import FakeKube

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NS = "team"
PLAIN = painter(False)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "NodeCluster",
        "metadata": {"name": "web", "namespace": NS, "creationTimestamp": stamp(7200)},
        "spec": {
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "targetNodes": 3,
            "minNodes": 1,
        },
        "status": {
            "state": "Deployed",
            "readyNodes": 2,
            "message": "2 of 3 nodes ready",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "NodesNotReady",
                    "message": "1 node is not ready",
                    "lastTransitionTime": stamp(90),
                },
                {"type": "Stalled", "status": "False", "reason": "AsExpected"},
            ],
            **status,
        },
    }


def member(name: str, zone: str | None, ready: bool = True, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nodecluster.io/v1alpha1",
        "kind": "ClusterNode",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": stamp(600)},
        "spec": {
            "clusterName": "web",
            "providerRef": {"name": "sim"},
            "profile": {"machineType": "small"},
            "profileHash": "h",
            "zone": zone,
        },
        "status": {
            "state": "Running",
            "ready": ready,
            "providerId": f"sim://{name}",
            "zone": zone,
            **status,
        },
    }


def facts(events: list[dict[str, Any]] | None = None) -> ClusterFacts:
    nodes = [
        member("web-b", "zone-b"),
        member("web-a2", "zone-a", nodeRef={"name": "ip-10-0-0-2", "uid": "u"}),
        member(
            "web-a1",
            "zone-a",
            ready=False,
            state="Failed",
            conditions=[
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "MachineFailed",
                    "message": "the provider reports it failed",
                }
            ],
        ),
    ]
    return ClusterFacts(
        NodeCluster.model_validate(cluster()),
        [ClusterNode.model_validate(n) for n in nodes],
        events or [],
    )


def test_describe_is_a_tree_of_zones_then_nodes_with_their_problems() -> None:
    text = render_tree(facts(), NOW, PLAIN)
    lines = text.splitlines()
    assert lines[0] == "NodeCluster team/web  Deployed  2/3 ready (target 3, min 1)"
    assert "provider sim, machine type small, desiredState Running, age 120m" in lines[1]
    tree = lines[lines.index("├── zone-a  1/2 ready") :]
    assert tree[:5] == [
        "├── zone-a  1/2 ready",
        "│   ├── web-a1  Failed  not ready  age 10m  sim://web-a1",
        "│   │   ! MachineFailed: the provider reports it failed",
        "│   └── web-a2  Running  ready  age 10m  sim://web-a2  Node ip-10-0-0-2",
        "└── zone-b  1/1 ready",
    ]
    assert tree[5] == "    └── web-b  Running  ready  age 10m  sim://web-b"
    conditions = lines[lines.index("Conditions:") + 1 :]
    assert conditions[0].split()[:4] == ["Ready", "False", "NodesNotReady", "90s"]
    assert "\x1b[" not in text


def test_describe_marks_the_warm_pools_nodes() -> None:
    warm = member("web-w", "zone-b", ready=False, state="Stopped")
    warm["metadata"]["labels"] = {"nodecluster.io/pool": "warm"}
    warm["spec"]["powerState"] = "Stopped"
    got = facts()
    got.nodes.append(ClusterNode.model_validate(warm))
    line = next(ln for ln in render_tree(got, NOW, PLAIN).splitlines() if "web-w" in ln)
    assert line.endswith("power Stopped  warm pool")


def test_describe_shows_the_last_events_oldest_first_and_says_when_it_cannot() -> None:
    events = [
        {
            "type": "Normal",
            "reason": "Scaling",
            "message": f"step {i}",
            "lastTimestamp": stamp(600 - i),
        }
        for i in range(12)
    ]
    events.append(
        {
            "type": "Warning",
            "reason": "Error",
            "message": "x",
            "count": 3,
            "lastTimestamp": stamp(5),
        }
    )
    text = render_tree(facts(events), NOW, PLAIN)
    shown = text.split("Events (last 10):\n")[1].splitlines()
    assert len(shown) == 10
    assert shown[0].endswith("Scaling: step 3")
    assert shown[-1].split() == ["5s", "Warning", "Error:", "x", "(x3)"]

    unreadable = facts()
    unreadable.events_unreadable = "not readable with your credentials (list events: 403)"
    assert "  not readable with your credentials" in render_tree(unreadable, NOW, PLAIN)


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color("auto", Tty()) is True
    assert use_color("auto", io.StringIO()) is False
    assert use_color("always", io.StringIO()) is True
    assert use_color("never", Tty()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color("auto", Tty()) is False
    coloured = render_tree(facts(), NOW, painter(True))
    assert "\x1b[31mFailed\x1b[0m" in coloured and "\x1b[32mready\x1b[0m" in coloured


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (90, "90s"),
        (150, "2m30s"),
        (600, "10m"),
        (7200, "120m"),
        (5 * 3600 + 1200, "5h20m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400, "12d"),
    ],
)
def test_ages_read_as_kubectls(seconds: int, shown: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), NOW) == shown


async def test_describe_reads_members_by_cluster_name_and_survives_forbidden_events() -> None:
    fake = FakeKube(seed=1)
    fake.add(NODECLUSTERS, cluster())
    fake.add(CLUSTERNODES, member("web-a1", "zone-a"))
    other = member("api-a1", "zone-a")
    other["spec"]["clusterName"] = "api"
    fake.add(CLUSTERNODES, other)
    fake.fail("list", "events", 403, times=None)
    got = await read_cluster(fake, NS, "web")
    assert [n.metadata.name for n in got.nodes] == ["web-a1"]
    assert got.events_unreadable == "not readable with your credentials (list events: 403)"


@pytest.mark.parametrize(
    ("verb", "count", "nodes", "spec"),
    [
        ("scale-out", 3, (), {"clusterName": "web", "action": "ScaleOut", "count": 3}),
        ("scale-in", 1, (), {"clusterName": "web", "action": "ScaleIn", "count": 1}),
        (
            "remove",
            None,
            ("web-a1",),
            {"clusterName": "web", "action": "RemoveNodes", "nodes": {"names": ["web-a1"]}},
        ),
        ("check", None, (), {"clusterName": "web", "action": "Check"}),
        (
            "recover",
            None,
            ("web-b",),
            {"clusterName": "web", "action": "Recover", "nodes": {"names": ["web-b"]}},
        ),
    ],
)
def test_each_verb_creates_its_operation(
    verb: str, count: int | None, nodes: tuple[str, ...], spec: dict[str, Any]
) -> None:
    body = operation_body("web", NS, verb, count=count, nodes=nodes)
    assert body["spec"] == spec
    assert body["metadata"]["generateName"] == f"web-{verb}-"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/created-by": "kubectl-nodecluster"}
    NodeClusterOperation.model_validate(body)


class Phases:
    """An API whose operation moves through the phases given, one per read."""

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)
        self.reads = 0

    async def get(self, kind: Any, namespace: str | None, name: str) -> dict[str, Any]:
        assert kind == OPERATIONS
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        return {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterName": "web", "action": "ScaleOut", "count": 2},
            "status": status,
        }


async def test_a_wait_shows_each_change_once_and_ends_with_the_operation() -> None:
    api = Phases(
        {},
        {"phase": "Running", "message": "scaling from 3 to 5 nodes"},
        {"phase": "Running", "message": "scaling from 3 to 5 nodes"},
        {"phase": "Succeeded", "message": "5 nodes ready", "previousTarget": 3, "newTarget": 5},
    )
    out = io.StringIO()
    ticks = iter(range(100))
    outcome = await wait_for_operation(
        api, NS, "op", 60, Progress(out, False, PLAIN), clock=lambda: float(next(ticks)), poll=0
    )
    assert outcome.finished and outcome.succeeded
    assert out.getvalue().splitlines() == [
        "Pending (1s): waiting for the operator to pick it up",
        "Running (2s): scaling from 3 to 5 nodes",
    ]  # (the end is the outcome's to say, once)
    assert outcome_lines(outcome, NS, PLAIN) == ["Succeeded: 5 nodes ready", "  target: 3 -> 5"]


async def test_on_a_terminal_the_progress_is_one_line_rewritten() -> None:
    api = Phases(
        {"phase": "Running", "message": "long message here"},
        {
            "phase": "Failed",
            "message": "no",
            "nodes": [{"name": "web-a1", "result": "Error", "message": "gone"}],
        },
    )
    out = io.StringIO()
    outcome = await wait_for_operation(api, NS, "op", 60, Progress(out, True, PLAIN), poll=0)
    # One line rewritten, then cleared for the outcome: no line of its own is left.
    assert out.getvalue() == "\rRunning (0s): long message here" + "\r" + " " * 31 + "\r"
    assert not outcome.succeeded
    assert outcome_lines(outcome, NS, PLAIN) == ["Failed: no", "  web-a1: Error  gone"]


async def test_a_wait_that_runs_out_says_the_operation_goes_on() -> None:
    api = Phases({"phase": "Running", "message": "waiting"})
    ticks = iter(range(0, 1000, 30))
    outcome = await wait_for_operation(
        api,
        NS,
        "op",
        60,
        Progress(io.StringIO(), False, PLAIN),
        clock=lambda: float(next(ticks)),
        poll=0,
    )
    assert not outcome.finished
    assert outcome_lines(outcome, NS, PLAIN)[0] == (
        "still Running: stopped waiting; the operation goes on "
        "(kubectl get nodeclusteroperation op -n team -w)"
    )
    assert Outcome(outcome.operation, finished=False).succeeded is False


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube(seed=1)
    fake.add(NODECLUSTERS, cluster())

    async def connect(cls: Any, *args: Any, **kwargs: Any) -> FakeKube:
        return fake

    monkeypatch.setattr(KubeClient, "connect", classmethod(connect))
    return fake


def test_a_verb_without_wait_creates_one_operation_and_says_its_name(
    fake: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scale-out", "web", "--by", "2", "-n", NS, "--no-wait", "--kubeconfig", "/none"]
    assert command.main(argv) == 0
    (created,) = fake.objects(OPERATIONS)
    assert created["spec"] == {"clusterName": "web", "action": "ScaleOut", "count": 2}
    name = created["metadata"]["name"]
    assert capsys.readouterr().out == f"nodeclusteroperation team/{name} created (ScaleOut by 2)\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["describe", "nope", "-n", NS], "error: NodeCluster team/nope not found"),
        (["scale-in", "nope", "--by", "1", "-n", NS], "error: NodeCluster team/nope not found"),
    ],
)
def test_a_missing_cluster_exits_1_saying_which(
    fake: FakeKube, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command.main([*argv, "--kubeconfig", "/none"]) == 1
    assert capsys.readouterr().err.startswith(says)
    assert not [c for c in fake.calls if c.verb == "create"]


def test_forbidden_says_a_permission_is_missing(
    fake: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail("create", "nodeclusteroperations", 403, message="forbidden: cannot create")
    argv = ["check", "web", "-n", NS, "--kubeconfig", "/none"]
    assert command.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the API server refused the request (403): your credentials")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["scale-out", "web", "--by", "0"], "0 must be 1 or more"),
        (["scale-out", "web"], "the following arguments are required: --by"),
        (["remove", "web"], "the following arguments are required: NODE"),
        (["describe"], "the following arguments are required: NAME"),
    ],
)
def test_usage_errors_exit_1_with_the_reason(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        command.main(argv)
    assert exited.value.code == 1
    assert says in capsys.readouterr().err


def test_the_installed_plugin_answers_help_without_loading_kopf() -> None:
    # The console script as pip installed it (pyproject.toml), next to this interpreter.
    script = Path(sys.executable).parent / "kubectl-nodecluster"
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "kubectl nodecluster scale-out workers --by 3" in helped.stdout
    code = (
        "import sys\n"
        "from nodecluster.plugin.command import parser\n"
        "import nodecluster.plugin.describe, nodecluster.plugin.operations\n"
        "import nodecluster.cli_plan, nodecluster.controllers.planinput\n"
        "import nodecluster.controllers.kube\n"
        "parser().parse_args(['describe', 'web'])\n"
        "assert 'kopf' not in sys.modules, 'kopf loaded'\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
