"""Adopt: take over machines made without the operator, as new nodes of a cluster.

The operation's steps, each recorded before the next is taken (controllers/operation.py
explains why every operation works this way):

1. Look (first step only). Ask the NodeProvider's driver (`Adoption.discover`) for the
   machines `spec.adopt` selects, decide for each whether it is adopted and as which node
   (planning/adopt.py), and record all of it in `status.adoption`. With `dryRun` that is
   the end: nothing but the operation's status is written. Otherwise the target before and
   after (`previousTarget`, `newTarget`) and a Pending result per node are recorded too.
2. Make the nodes, under the cluster's lock: one patch of the NodeCluster raises
   `spec.targetNodes` (exactly once, from the recorded previous target: `apply_target`'s
   rule) and sets `ADOPTING_ANNOTATION`; then each ClusterNode is created, carrying the
   provider id of its machine; then the annotation is removed.
3. Wait until each node has taken its machine over (its status shows the machine's
   provider id) or failed to.

Crash safety. The order is chosen so that a kill at any point leaks nothing and doubles
nothing:

- The ClusterNode exists before its machine is tagged (its own controller tags it:
  controllers/takeover.py), so there is never a machine tagged for a node that does not
  exist, which the orphan collection would delete (the owner's machine!).
- Raising the target before the nodes exist would let the cluster's reconcile create
  fresh machines for them; creating the nodes before raising the target would let it
  scale in (deleting nodes, the cluster's own among them). The annotation, written in the
  same patch as the target, closes that gap: while it names this running operation, the
  cluster makes no node of its own (`hold_for_adoption`). A node created twice is a 409,
  which is the node created before.
- A retry recognises step 2 done by the cluster: the target already at `newTarget` and no
  annotation means the nodes were made (the annotation is removed only after the last).

A machine is adopted at most once: its node's name is derived from the operation's uid
and recorded before the node is created, and the node finds its machine by the name
derived from its identity before it would adopt (tag) it again.
"""

from __future__ import annotations

from typing import Any

from nodecluster.api.adopt import AdoptCandidate
from nodecluster.api.clusternode import ClusterNode, PowerState
from nodecluster.api.operation import NodeResult
from nodecluster.controllers.clusternode import identity_of
from nodecluster.controllers.kubeapi import (
    CLUSTERNODES,
    NODECLUSTERS,
    REFUSED,
    KubeConflict,
    KubeError,
)
from nodecluster.controllers.nodecluster import child_body
from nodecluster.controllers.operation import (
    CONFLICT_ATTEMPTS,
    WAIT_POLL_SECONDS,
    Finished,
    OperationScope,
    Outcome,
    Waiting,
    cluster_driver,
    list_nodes,
    read_cluster,
    record_intent,
    refuse_if_paused,
)
from nodecluster.controllers.world import (
    IndexedNode,
    World,
    profile_hash,
)
from nodecluster.planning.adopt import (
    ADOPT_MACHINE_ANNOTATION,
    ADOPTING_ANNOTATION,
    MachineFacts,
    adoption_problem,
    plan_adoption,
)
from nodecluster.planning.operations import OperationRefused
from nodecluster.planning.planner import CreateNode
from nodecluster.providers.base import Adoption, MachineSelection, ProviderError
from nodecluster.providers.identity import claimed_by

FAILED_NODE_REASONS = frozenset(
    {"MachineMissing", "MachineOwnedElsewhere", "InvalidProviderConfig"}
)
"""A node's Ready reasons that end its adoption in failure: the machine is gone, was taken
by someone else meanwhile, or the driver cannot adopt it."""


async def adopt_machines(world: World, scope: OperationScope) -> Outcome:
    """Adopt: look and decide (dryRun: and report), then make the nodes, then wait for
    them to take their machines over."""
    status = scope.status
    if status.adoption is None:
        looked = await look(world, scope)
        if looked is not None:
            return looked
    if status.cluster_generation is None:
        await make_nodes(world, scope)
        world.queues.cluster.add(scope.key)
        return Waiting(WAIT_POLL_SECONDS)
    return await await_adoption(world, scope)


async def look(world: World, scope: OperationScope) -> Outcome | None:
    """Step 1: discover, decide, record. An outcome when the operation ends here (a dry
    run) or must wait for its provider; None when its intent is recorded."""
    op, nc, status = scope.op, scope.cluster, scope.status
    assert op.spec.adopt is not None  # the API server's rule; a stored one without fails here
    dry_run = bool(op.spec.dry_run)
    if not dry_run:
        refuse_if_paused(scope)
    provider = nc.spec.provider_ref.name
    driver = await cluster_driver(world, scope)
    if isinstance(driver, Waiting):
        return driver
    if not isinstance(driver, Adoption):
        raise OperationRefused(
            f"the driver of NodeProvider {provider!r} cannot adopt machines (it does not "
            "implement Adoption): nothing was changed"
        )
    selection = MachineSelection(
        provider_ids=tuple(op.spec.adopt.provider_ids), tags=dict(op.spec.adopt.tags)
    )
    try:
        machines = await driver.discover(selection)
    except ProviderError as err:
        if not err.retryable:
            raise OperationRefused(f"the provider could not list the machines: {err}") from err
        status.phase = "Pending"
        status.message = f"asking the provider for the machines again: {err}"
        return Waiting(WAIT_POLL_SECONDS)
    facts = [
        MachineFacts(m.provider_id, m.machine_type, m.zone, m.state, claimed_by(m))
        for m in machines
    ]
    taken = {
        str(n["metadata"]["name"])
        for n in await world.api.list(CLUSTERNODES, op.metadata.namespace)
    }
    report = plan_adoption(
        nc.metadata.name,
        nc.spec,
        op.spec.adopt,
        facts,
        taken,
        seed=op.metadata.uid or f"{op.metadata.namespace}/{op.metadata.name}",
    )
    status.adoption = report
    problem = adoption_problem(nc.spec, report)
    refused = report.matched - report.adopted
    previous, target = nc.spec.target_nodes, nc.spec.target_nodes + report.adopted
    if dry_run:
        if problem is not None:
            return Finished("Failed", f"dry run: {problem}; nothing was changed")
        return Finished(
            "Succeeded",
            f"dry run: would adopt {report.adopted} of {report.matched} machines matched "
            f"({refused} refused); target {previous} -> {target}; nothing was changed",
        )
    if problem is not None:
        raise OperationRefused(f"{problem}; nothing was changed")
    status.phase = "Running"
    status.previous_target, status.new_target = previous, target
    status.nodes = [
        NodeResult(name=c.node or "", result="Pending", message=f"to adopt {c.provider_id}")
        for c in adopted_of(scope)
    ]
    status.message = (
        f"adopting {report.adopted} machines ({refused} refused); target {previous} -> {target}"
    )
    await record_intent(world, scope)
    return None


def adopted_of(scope: OperationScope) -> list[AdoptCandidate]:
    """The machines the operation adopts, as recorded (each with its node's name)."""
    report = scope.status.adoption
    assert report is not None
    return [c for c in report.machines if c.verdict == "Adopt" and c.node]


async def make_nodes(world: World, scope: OperationScope) -> None:
    """Step 2, under the cluster's lock: raise the target and mark the cluster in one
    patch, create the nodes, unmark it. Recorded (`clusterGeneration`) by the caller's
    status write."""
    status = scope.status
    assert status.previous_target is not None and status.new_target is not None
    async with world.book.lock(scope.key):
        generation, pending = await raise_target(
            world, scope, status.previous_target, status.new_target
        )
        if pending:
            await create_nodes(world, scope)
            await unmark(world, scope)
    status.cluster_generation = generation
    status.message = (
        f"target {status.previous_target} -> {status.new_target}; waiting for "
        f"{len(status.nodes)} nodes to take their machines over"
    )


async def raise_target(
    world: World, scope: OperationScope, previous: int, new: int
) -> tuple[int, bool]:
    """Move spec.targetNodes from `previous` to `new` and mark the cluster as adopting,
    in one write, exactly once: (the cluster's generation, whether its nodes are still to
    be made). A target at `new` and marked by this operation: an earlier attempt raised
    it and did not finish making the nodes; at `new` and not marked: it made them all.
    Neither `previous` nor `new`: someone else changed it meanwhile, and the operation is
    refused having changed nothing (as apply_target refuses a scale)."""
    name = scope.op.metadata.name
    for _ in range(CONFLICT_ATTEMPTS):
        nc = scope.cluster
        current = nc.spec.target_nodes
        if current == new:
            marked = nc.metadata.annotations.get(ADOPTING_ANNOTATION) == name
            return nc.metadata.generation, marked
        if current != previous:
            raise OperationRefused(
                f"spec.targetNodes is {current}, neither {previous} (before this operation) "
                f"nor {new} (what it sets): it was changed meanwhile; nothing was adopted"
            )
        try:
            patched = await world.api.patch(
                NODECLUSTERS,
                scope.key[0],
                nc.metadata.name,
                {
                    "metadata": {
                        "resourceVersion": nc.metadata.resource_version,
                        "annotations": {ADOPTING_ANNOTATION: name},
                    },
                    "spec": {"targetNodes": new},
                },
            )
        except KubeConflict:
            scope.cluster = await read_cluster(world, scope.op)
            continue
        # The cluster's next reconcile must plan with this target: one planned from a body
        # of before it (its watch event not in yet) would scale in the nodes made next.
        world.bodies.wrote(("NodeCluster", *scope.key), patched)
        return int(patched["metadata"]["generation"]), True
    raise KubeConflict(409, f"spec.targetNodes of {scope.key[1]!r} kept changing; trying again")


async def create_nodes(world: World, scope: OperationScope) -> None:
    """Create the recorded nodes, each naming its machine; one there already is fine."""
    nc = scope.cluster
    phash = profile_hash(nc.spec.profile)
    power: PowerState = "Stopped" if nc.spec.desired_state == "Stopped" else "Running"
    for candidate in adopted_of(scope):
        assert candidate.node is not None
        create = CreateNode(candidate.node, candidate.zone, power)
        body = child_body(nc, create, phash)
        body["metadata"]["annotations"] = {ADOPT_MACHINE_ANNOTATION: candidate.provider_id}
        world.expectations.expect_create(
            scope.key,
            IndexedNode(
                name=candidate.node,
                created_at=scope.now,
                zone=candidate.zone,
                power_state=power,
                profile_hash=phash,
                provider=nc.spec.provider_ref.name,
                machine_type=nc.spec.profile.machine_type,
            ),
        )
        try:
            await world.api.create(CLUSTERNODES, scope.key[0], body)
        except KubeConflict:
            continue  # made by an earlier attempt
        except KubeError as err:
            if err.status in REFUSED:
                world.expectations.refused(scope.key, candidate.node)
            raise
        world.metrics.machine_event(scope.key, "created", "Adopt")


async def unmark(world: World, scope: OperationScope) -> None:
    """Remove the cluster's adopting annotation: its nodes exist, it may make its own."""
    patch: dict[str, Any] = {"metadata": {"annotations": {ADOPTING_ANNOTATION: None}}}
    patched = await world.api.patch(NODECLUSTERS, scope.key[0], scope.key[1], patch)
    world.bodies.wrote(("NodeCluster", *scope.key), patched)


async def await_adoption(world: World, scope: OperationScope) -> Outcome:
    """Step 3: how far each node has come in taking its machine over."""
    status = scope.status
    wanted = {c.node: c.provider_id for c in adopted_of(scope)}
    nodes = {n.metadata.name: n for n in await list_nodes(world, scope.op)}
    results = [
        adoption_result(r.name, wanted.get(r.name, ""), nodes.get(r.name), world)
        for r in status.nodes
    ]
    status.nodes = results
    pending = sum(1 for r in results if r.result == "Pending")
    if pending:
        status.message = (
            f"target {status.previous_target} -> {status.new_target}; waiting for {pending} "
            f"of {len(results)} nodes to take their machines over"
        )
        return Waiting(WAIT_POLL_SECONDS)
    errors = sum(1 for r in results if r.result == "Error")
    return Finished(
        "Failed" if errors else "Succeeded",
        f"adopted {len(results) - errors} of {len(results)} machines"
        + (f", {errors} failed" if errors else "")
        + f"; target {status.previous_target} -> {status.new_target}",
        results,
    )


def adoption_result(
    name: str, provider_id: str, node: ClusterNode | None, world: World
) -> NodeResult:
    """One node's result: OK once its status shows its machine, Error if it is gone or
    reports its machine gone or taken, Pending meanwhile."""
    if node is None:
        return NodeResult(name=name, result="Error", message=f"node disappeared ({provider_id})")
    if node.status.provider_id == provider_id and node.status.machine_name is not None:
        machine = node.status.machine_name
        identity = identity_of(world, node).describe()
        return NodeResult(
            name=name,
            result="OK",
            message=f"adopted {provider_id} as machine {machine} ({identity})",
        )
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    if ready is not None and ready.status == "False" and ready.reason in FAILED_NODE_REASONS:
        return NodeResult(
            name=name,
            result="Error",
            message=f"{provider_id}: {node.status.message or ready.message}",
        )
    return NodeResult(name=name, result="Pending", message=f"adopting {provider_id}")
