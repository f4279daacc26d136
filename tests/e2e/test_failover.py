"""Two replicas and a Lease: the standby takes over when the leader dies or freezes, and
nothing is lost, leaked or doubled.

Two operator processes run with `--leader-elect` (short timings, so a round takes seconds:
lease 6 s, renew deadline 4 s, retry 1 s). At a seeded random moment of a scale-out, a
scale-in or a deletion the leader is killed with SIGKILL and started again (as a standby
now); after each round the standby must hold the Lease, the cluster must converge, and the
audit of test_chaos must find the provider's machines equal to the ClusterNodes, equal to
what was declared, no machine created twice. Once, the leader is frozen with SIGSTOP past
its renew deadline instead: the standby takes over while it is still alive, and when it
is let go (SIGCONT) it must exit with the lease-lost status before writing anything.

    NODECLUSTER_FAILOVER_ROUNDS=30 tools/test tests/e2e/test_failover.py
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from kube import Kube, Operator, wait_for
from scenario import Scenario
from test_chaos import audit, survey

ROUNDS = int(os.environ.get("NODECLUSTER_FAILOVER_ROUNDS", "6"))
LEASE = "nodecluster-operator-failover"
TIMINGS = ["--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1"]
LEASE_LOST_EXIT_CODE = 3


class Pair:
    """Two replicas, `a` and `b`, electing on one Lease in the test's namespace."""

    def __init__(self, kube: Kube, ns: str, workdir: Path) -> None:
        self.kube = kube
        self.ns = ns
        self.workdir = workdir
        args = ["--leader-elect", "--lease-name", LEASE, "--lease-namespace", ns, *TIMINGS]
        self.replicas: dict[str, Operator] = {}
        for who in ("a", "b"):
            own = workdir / f"replica-{who}"  # its own logs
            own.mkdir(exist_ok=True)
            self.replicas[who] = Operator(
                kube,
                own,
                # One provider inventory for both, the session operator's (Scenario's).
                extra_env={
                    "POD_NAME": f"replica-{who}",
                    "NODECLUSTER_SIMULATOR_DIR": str(workdir / "simulator"),
                },
                extra_args=args,
            )

    def identity(self) -> str:
        """The Lease's holderIdentity as it stands ("replica-a_<uuid>"), or ""."""
        got = self.kube.kubectl(
            "get",
            "lease",
            LEASE,
            "-n",
            self.ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            check=False,
        )
        return got.stdout.strip() if got.returncode == 0 else ""

    def holder(self) -> str | None:
        """Which replica holds the Lease ("a", "b"), if any."""
        name = self.identity()
        for who in self.replicas:
            if name.startswith(f"replica-{who}_"):
                return who
        return None

    def revive(self) -> None:
        """Start again a replica that stopped on its own: on a loaded machine a leader whose
        loop was held past its renew deadline loses the Lease and exits, as it must (status
        3, nothing else), and its Deployment would start it again."""
        for who, replica in self.replicas.items():
            if replica.proc is not None and replica.proc.poll() is not None:
                code = replica.proc.returncode
                assert code == LEASE_LOST_EXIT_CODE, f"replica {who} exited {code}"
                replica.proc = None
                replica.start()

    def leader(self) -> str:
        return wait_for("a replica to hold the Lease", self.holder, timeout=60)

    def taken_over_from(self, gone: str) -> str | None:
        """The holder's identity once it is another process than `gone`'s, else None.

        Any other process will do: the standby, or the killed leader started again (a new
        identity) when it wins the race to the expired Lease, which is as legitimate. A
        replica that lost the Lease on its own meanwhile is started again first, as its
        Deployment would, or nobody would be left to take over."""
        self.revive()
        now = self.identity()
        return now if now and now != gone else None


@pytest.fixture
def pair(kube: Kube, operator: Operator, ns: str) -> Iterator[Pair]:
    """The pair in place of the session's operator (never two acting at once)."""
    p = Pair(kube, ns, operator.workdir)
    operator.stop()
    for replica in p.replicas.values():
        replica.start()
    try:
        yield p
    finally:
        for replica in p.replicas.values():
            if replica.proc is not None:
                os.killpg(replica.proc.pid, signal.SIGCONT)
            replica.stop()
        operator.start()


@pytest.fixture
def pair_scenario(kube: Kube, pair: Pair, ns: str) -> Iterator[Scenario]:
    sc = Scenario(kube, ns, pair.workdir)
    yield sc
    done = kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
    kube.kubectl("delete", "nodeprovider", sc.provider, "--timeout=30s", check=False)
    assert done.returncode == 0, f"deleting the test's clusters failed: {done.stderr}"


def test_the_standby_takes_over_from_a_killed_or_frozen_leader_and_loses_nothing(
    pair: Pair, pair_scenario: Scenario, kube: Kube
) -> None:
    sc = pair_scenario
    sc.make_provider()
    rng = random.Random(int(os.environ.get("NODECLUSTER_CHAOS_SEED", "1")))
    target = 0
    frozen_round = rng.randrange(ROUNDS)
    for i in range(ROUNDS):
        pair.revive()
        leader = pair.leader()
        phase = rng.choice(["scale-out", "scale-in", "delete"])
        exists = bool(sc.nc())
        if not exists:
            target = 0
        if (phase == "delete" and not exists) or (phase == "scale-in" and target == 0):
            phase = "scale-out"
        if phase == "delete":
            kube.kubectl("delete", "nodecluster/workers", "-n", sc.ns, "--wait=false")
            target = 0
        else:
            target = (
                rng.randint(target + 1, target + 6)
                if phase == "scale-out"
                else rng.randint(0, target - 1)
            )
            sc.make_cluster(targetNodes=target, minNodes=0, maxNodes=50, policies={})
        # Not a wait for anything: the seeded random moment the fault lands.
        time.sleep(rng.uniform(0.0, 1.2))
        old = pair.replicas[leader]
        gone = pair.identity()
        if i == frozen_round:
            assert old.proc is not None
            os.killpg(old.proc.pid, signal.SIGSTOP)
            wait_for(f"round {i}: another than {gone} to lead", partial(pair.taken_over_from, gone))
            converge(sc, phase, target, i)
            os.killpg(old.proc.pid, signal.SIGCONT)
            code = old.proc.wait(timeout=30)
            assert code == LEASE_LOST_EXIT_CODE, f"the frozen leader exited {code}"
            log = old.log_path.read_text(errors="replace")
            assert "exiting now so that the new leader acts alone" in log
            old.proc = None
            old.start()
        else:
            old.kill9()
            old.start()
            wait_for(f"round {i}: another than {gone} to lead", partial(pair.taken_over_from, gone))
            converge(sc, phase, target, i)
    # The last leader is the one that acted: the other never did after it lost the Lease.
    assert pair.holder() in ("a", "b")


def converge(sc: Scenario, phase: str, target: int, i: int) -> None:
    if phase == "delete":
        wait_for(f"round {i}: cluster deleted", lambda: sc.nc() == {}, timeout=120)
        found = survey(sc, 0)
        assert found.machines == set(), "machines leaked by deletion"
        assert found.nodes == set()
    else:
        sc.wait_converged(target, timeout=120)
        audit(sc, target)
