"""A NodeCluster on the aws driver, against moto's EC2: the operator as a real process (the
suite's), a NodeProvider with `driver: aws` whose `endpointUrl` is moto's server, and at every
step the EC2 inventory (DescribeInstances) audited against the ClusterNodes: one instance per
node, none without its node, in the zones and of the type declared."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kube import Kube, Operator, wait_audited, wait_for
from scenario import DriverCluster, one_machine_each

from nodecluster.providers.aws.instances import MACHINE_TAG, PROVIDER_TAG
from nodecluster.providers.identity import NODE_TAG
from nodecluster.testing.ec2 import (
    TEST_CREDENTIALS,
    Ec2Network,
    MotoServer,
    ec2_client,
    live_instances,
    make_network,
    moto_server,
)

__all__ = ["moto_server"]  # the session's moto server (a fixture)

ZONES = ("zone-a", "zone-b")
TIMEOUT = 120.0


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


class Ec2Cluster(DriverCluster):
    """One test's aws NodeProvider (moto behind it) and its NodeCluster `workers`."""

    def __init__(self, kube: Kube, ns: str, network: Ec2Network) -> None:
        super().__init__(kube, ns, f"aws-{ns}")
        self.network = network

    def make_provider(self) -> None:
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "aws-credentials", "namespace": self.ns},
                "stringData": TEST_CREDENTIALS,
            }
        )
        self.kube.apply(
            {
                "apiVersion": "nodecluster.io/v1alpha1",
                "kind": "NodeProvider",
                "metadata": {"name": self.provider},
                "spec": {
                    "driver": "aws",
                    "config": self.network.driver_config(
                        subnets={z: self.network.subnets[z] for z in ZONES}
                    ),
                    "credentialsSecretRef": {"name": "aws-credentials", "namespace": self.ns},
                    "quotas": {"maxNodes": 50},
                },
            }
        )

    def cluster_defaults(self, nc: dict[str, Any]) -> None:
        nc["spec"]["profile"] = {"machineType": "t3.micro", "labels": {"team": "batch"}}
        nc["spec"]["policies"]["placement"]["zones"] = [{"name": z, "weight": 1} for z in ZONES]

    def instances(self) -> list[dict[str, Any]]:
        """This provider's instances that are not terminated (moto's truth)."""

        async def read() -> list[Any]:
            async with ec2_client(self.network.endpoint) as client:
                return list(await live_instances(client))

        found = asyncio.run(read())
        return [i for i in found if tags(i).get(PROVIDER_TAG) == self.provider]

    def audit(self, count: int, state: str = "Deployed", ec2_state: str = "running") -> str | None:
        """None when the cluster is `state` with `count` nodes, each with exactly one
        instance in `ec2_state`, none without its node; else what differs."""
        if (differs := self.not_in_state(state)) is not None:
            return differs
        nodes = {n["metadata"]["name"]: n for n in self.cluster_nodes()}
        instances = self.instances()
        per_node = Counter(tags(i).get(NODE_TAG) for i in instances)
        one_machine_each(per_node, "nodes with more than one instance")
        if len(nodes) != count or set(per_node) != set(nodes):
            return f"nodes {sorted(nodes)} vs instances of {sorted(map(str, per_node))}"
        states = {i["State"]["Name"] for i in instances}
        if states != {ec2_state}:
            return f"instances {states}, not all {ec2_state}"
        for instance in instances:
            node = nodes[tags(instance)[NODE_TAG]]
            wanted = f"aws:///{instance['Placement']['AvailabilityZone']}/{instance['InstanceId']}"
            node_status = node.get("status") or {}
            if node_status.get("providerId") != wanted:
                return (
                    f"node {node['metadata']['name']}: providerId {node_status.get('providerId')}"
                )
            if node_status.get("machineName") != tags(instance)[MACHINE_TAG]:
                return f"node {node['metadata']['name']}: machineName differs from the instance's"
        return None

    def wait(self, what: str, count: int, **kwargs: Any) -> None:
        wait_audited(what, lambda: self.audit(count, **kwargs), timeout=TIMEOUT)


@pytest.fixture
def network(moto_server: MotoServer) -> Ec2Network:
    """An emptied EC2 with a subnet in each of two availability zones."""
    moto_server.reset()
    return asyncio.run(make_network(moto_server.endpoint, zones=ZONES))


@pytest.fixture
def aws(kube: Kube, operator: Operator, ns: str, network: Ec2Network) -> Iterator[Ec2Cluster]:
    cluster = Ec2Cluster(kube, ns, network)
    cluster.make_provider()
    yield cluster
    done = kube.kubectl("delete", "nodeclusters", "--all", "-n", ns, "--timeout=90s", check=False)
    kube.kubectl("delete", "nodeprovider", cluster.provider, "--timeout=30s", check=False)
    assert done.returncode == 0, f"deleting the test's clusters failed: {done.stderr}"


def test_a_cluster_on_ec2_converges_spreads_stops_starts_rolls_out_and_is_deleted(
    aws: Ec2Cluster, kube: Kube
) -> None:
    aws.make_cluster(targetNodes=2)
    aws.wait("2 instances, one per node", 2)

    aws.patch(targetNodes=4)
    aws.wait("4 instances after scaling out", 4)
    per_zone = Counter(i["Placement"]["AvailabilityZone"] for i in aws.instances())
    assert per_zone == {aws.network.availability_zones[z]: 2 for z in ZONES}

    aws.patch(desiredState="Stopped")
    aws.wait("every instance stopped", 4, state="Stopped", ec2_state="stopped")
    aws.patch(desiredState="Running")
    aws.wait("every instance running again", 4)

    before = {i["InstanceId"] for i in aws.instances()}
    aws.patch(profile={"machineType": "t3.small", "labels": {"team": "batch"}})
    aws.wait("the rollout's instances", 4)
    wait_for(
        "every instance replaced by a t3.small",
        lambda: {i["InstanceType"] for i in aws.instances()} == {"t3.small"},
        timeout=TIMEOUT,
    )
    assert not before & {i["InstanceId"] for i in aws.instances()}

    kube.kubectl("delete", "nodecluster/workers", "-n", aws.ns, "--timeout=90s")
    wait_for("no instance left", lambda: aws.instances() == [], timeout=TIMEOUT)


def test_kill_9_during_scaling_neither_loses_nor_doubles_an_instance(
    aws: Ec2Cluster, operator: Operator
) -> None:
    rng = random.Random(12)
    aws.make_cluster(targetNodes=2)
    aws.wait("2 instances", 2)
    for target in (6, 3, 7, 2):
        aws.patch(targetNodes=target)
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the middle of the scaling
        operator.kill9()
        operator.start()
        aws.wait(f"{target} instances after a kill -9", target)
