"""A fleet split between two operators, the Kubernetes way: each serves its own namespaces,
with its own installation id and its own Lease, and both share one NodeProvider.

Neither may touch the other's machines, whatever the other does: one is killed and its
cluster deleted meanwhile, the other scales its own cluster out and in, and the dead
one's machines stay exactly as they were until it is back to delete them itself.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kube import Kube, Operator, wait_for
from scenario import Scenario


@dataclass
class Shard:
    """One operator, serving one namespace."""

    name: str
    ns: str
    operator: Operator
    scenario: Scenario

    def machines(self) -> dict[str, str]:
        """This shard's cluster's machines at the provider: name -> installation tag."""
        return {
            m["name"]: json.loads(m["tags"] or "{}").get("nodecluster.io/installation", "")
            for m in self.scenario.inventory.machines(self.scenario.tag())
        }


@pytest.fixture
def shards(kube: Kube, operator: Operator) -> Iterator[tuple[Shard, Shard]]:
    """Two operators on two namespaces in place of the session's (which serves all)."""
    made: list[Shard] = []
    provider_scenario: Scenario | None = None
    for name in ("shard-a", "shard-b"):
        ns = f"e2e-{name}-{secrets.token_hex(2)}"
        kube.kubectl("create", "namespace", ns)
        workdir = operator.workdir / name
        workdir.mkdir(exist_ok=True)
        op = Operator(
            kube,
            workdir,
            extra_env={"POD_NAME": name},
            extra_args=[
                "--namespace", ns,
                "--installation-name", name,
                "--leader-elect", "--lease-name", name, "--lease-namespace", ns,
            ],
        )  # fmt: skip
        sc = Scenario(kube, ns, operator.workdir)
        if provider_scenario is None:
            provider_scenario = sc
        else:  # one NodeProvider, one inventory, for both
            sc.provider, sc.inventory = provider_scenario.provider, provider_scenario.inventory
        made.append(Shard(name, ns, op, sc))
    operator.stop()
    for shard in made:
        shard.operator.start()
    try:
        yield made[0], made[1]
    finally:
        for shard in made:
            if not shard.operator.alive():
                shard.operator.start()
        for shard in made:
            kube.kubectl(
                "delete", "nodeclusters", "--all", "-n", shard.ns, "--timeout=90s", check=False
            )
        assert provider_scenario is not None
        kube.kubectl("delete", "nodeprovider", provider_scenario.provider, "--timeout=30s",
                     check=False)  # fmt: skip
        for shard in made:
            shard.operator.stop()
            kube.kubectl("delete", "namespace", shard.ns, "--wait=false", check=False)
        operator.start()


def test_two_operators_on_two_namespaces_share_a_provider_and_never_touch_each_others_machines(
    shards: tuple[Shard, Shard], kube: Kube
) -> None:
    a, b = shards
    a.scenario.make_provider()
    for shard in (a, b):
        shard.scenario.make_cluster(targetNodes=3, minNodes=0, maxNodes=10, policies={})
    for shard in (a, b):
        shard.scenario.wait_converged(3)

    # Each tags its machines with its own id, holds its own Lease, and has its own view of
    # the provider.
    ids = {shard.name: kube.installation_id(shard.name) for shard in (a, b)}
    for shard in (a, b):
        assert set(shard.machines().values()) == {ids[shard.name]}
        lease = kube.get("lease", shard.name, shard.ns) or {}
        assert lease["spec"]["holderIdentity"].startswith(f"{shard.name}_")
    provider = kube.get("nodeprovider", a.scenario.provider) or {}

    def both_report() -> dict[str, object] | None:
        seen = (kube.get("nodeprovider", a.scenario.provider) or {}).get("status") or {}
        views = seen.get("installations") or {}
        counts = {i: (views.get(i) or {}).get("nodes") for i in ids.values()}
        return counts if all(n == 3 for n in counts.values()) else None

    wait_for("both installations to report their 3 machines", both_report)
    assert provider

    # A dies; its cluster is deleted meanwhile (its finalizer waits for A). B works on.
    before = a.machines()
    a.operator.kill9()
    kube.kubectl("delete", "nodecluster/workers", "-n", a.ns, "--wait=false")
    b.scenario.patch_spec(targetNodes=5)
    b.scenario.wait_converged(5)
    b.scenario.patch_spec(targetNodes=2)
    b.scenario.wait_converged(2)
    assert a.machines() == before, "the other operator touched a dead shard's machines"
    assert (
        (kube.get("nodecluster", "workers", a.ns) or {})
        .get("metadata", {})
        .get("deletionTimestamp")
    ), "the dead shard's cluster must wait for its own operator"

    # A is back: it deletes its own machines, and only those.
    a.operator.start()
    wait_for("the dead shard's cluster gone", lambda: a.scenario.nc() == {}, timeout=120)
    assert a.machines() == {}
    assert len(b.machines()) == 2
    assert set(b.machines().values()) == {ids[b.name]}
