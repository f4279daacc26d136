"""`nodecluster-operator plan -f CHANGED.yaml` (and `kubectl nodecluster plan`): what a
changed NodeCluster would make the operator do, before it is applied.

Reads the live NodeCluster, its ClusterNodes and its NodeProvider (get and list, nothing
else), builds the planner's input exactly as the controller does (controllers/planinput.py)
and lets planning/preview.py step the real planner on it. Prints the change per zone and
its batches, or a JSON document (`-o json`, schema below). Exit status as
`terraform plan -detailed-exitcode`: 0 nothing would change, 2 something would, 1 an error
(the message says what, never a traceback), so CI can gate on it.

JSON document (`kind: NodeClusterPlan`, `version: 1`; keys are never removed within a
version, new ones may appear):

    cluster          {namespace, name}
    changed          bool: applying changes the spec or any machine (exit status 2)
    replacesMachines bool: existing machines are replaced (deleted for a successor)
    summary          the line shown first in the text output
    specChanges      [{path, before, after}]: dotted camelCase paths, null when absent
    nodes            {before, after, desired, warmBefore, warmAfter}: counts of serving
                     nodes and of the warm pool's (nodes being deleted not counted)
    creates          number of new serving nodes (names are chosen when they are created)
    warmCreates      number of new warm nodes (the warm pool's refill)
    moves            [{node, zone, warm}]: promotions from the warm pool (warm false) and
                     returns to it (warm true)
    deletes          [{node, zone, reason}]: reason ScaleIn, Rollout, Expired,
                     Remediation, CapacityFallback, WarmPool or Terminating
    deletionsCertain bool: false when policies.deletion.criteria is Random and the
                     ranking chooses: the nodes named are one possible draw
    powerChanges     [{node, zone, powerState}]
    reboots          [{node, zone}]
    zones            [{zone, before, after, creates, warmCreates, deletes: [{node, reason}],
                       powerChanges: [{node, powerState}], reboots: [node],
                       moves: [{node, warm}]}]
                     by zone name; zone null: nodes without a zone, last
    batches          [{creates: [{zone, machineType, warm}], deletes: [{node, zone, reason}],
                       powerChanges: [...], reboots: [...], moves: [...]}]: in order,
                     each once the one before is done
    settled          bool: the planner had nothing left to do after the last batch
    blockers         [{reason, message}]: why the plan does less than the spec asks
    held             [{process, message}]: what spec.suspend holds back
    inProgress       {creates, deletes, powerChanges, reboots}: what the operator still
                     does under the live spec (counts), not caused by this change
    unknown          [text]: what the preview cannot know (capacity, quota at the time...)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from nodecluster.api.nodecluster import NodeCluster
from nodecluster.api.nodeprovider import NodeProvider
from nodecluster.api.reasons import Reason
from nodecluster.controllers.kubeapi import KubeApi
from nodecluster.planning.model import NodeView
from nodecluster.planning.planner import Plan
from nodecluster.planning.preview import (
    Preview,
    cause_text,
    preview,
    replacement_summary,
    serving,
    warm_count,
)

EXIT_NO_CHANGE = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

Output = Literal["text", "json"]


class PlanError(Exception):
    """Something a person must fix before a plan can be made (exit status 1)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `plan`, the same in both commands."""
    parser.add_argument(
        "-f",
        "--filename",
        metavar="FILE",
        required=True,
        help="the changed NodeCluster manifest (YAML or JSON; '-' reads standard input)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        help="the cluster's namespace when the manifest names none (default: the "
        "kubeconfig context's)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (the default), json for tools (schema: README, Plan preview)",
    )
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    )


PLAN_DESCRIPTION = (
    "Show what applying a changed NodeCluster would make the operator do, without "
    "applying it: nodes created and deleted (which, and why) per zone, machines "
    "replaced and the batches of the rollout, power changes. Reads the live cluster, its "
    "nodes and its provider (read-only) and runs the operator's own planner on the "
    "changed spec. Exit status: 0 no change, 2 changes, 1 error."
)


def run(args: argparse.Namespace, kubeconfig: str | None) -> int:
    """The command: read, preview, print; the exit status."""
    import asyncio

    try:
        manifest = load_manifest(args.filename)
        result = asyncio.run(plan_report(manifest, args.namespace, args.output, kubeconfig))
    except PlanError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(result.text)
    return EXIT_CHANGES if result.changed else EXIT_NO_CHANGE


def load_manifest(filename: str) -> dict[str, Any]:
    """The one NodeCluster document of the file."""
    try:
        raw = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except OSError as err:
        raise PlanError(f"cannot read {filename}: {err.strerror or err}") from None
    try:
        docs = [d for d in yaml.safe_load_all(raw) if d is not None]
    except yaml.YAMLError as err:
        raise PlanError(f"{filename} is not valid YAML: {err}") from None
    clusters = [d for d in docs if isinstance(d, dict) and d.get("kind") == "NodeCluster"]
    if len(clusters) != 1:
        kinds = ", ".join(str(d.get("kind")) for d in docs if isinstance(d, dict)) or "none"
        raise PlanError(
            f"{filename} must hold exactly one NodeCluster manifest (kind: NodeCluster); "
            f"it holds {len(clusters)} (kinds: {kinds})"
        )
    return clusters[0]


def validated(manifest: Mapping[str, Any]) -> NodeCluster:
    """The manifest as the API would take it, or a PlanError naming each bad field."""
    try:
        nc = NodeCluster.model_validate(manifest)
    except ValidationError as err:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            + (f" (got {e['input']!r})" if not isinstance(e["input"], dict | list) else "")
            for e in err.errors()
        ]
        raise PlanError("invalid NodeCluster:\n  " + "\n  ".join(problems)) from None
    if not nc.metadata.name:
        raise PlanError("invalid NodeCluster: metadata.name is required")
    unknown = unknown_fields(manifest.get("spec") or {}, nc.spec.model_dump(by_alias=True))
    if unknown:
        raise PlanError(
            "invalid NodeCluster: not fields of a NodeCluster spec (the API server would "
            "drop them): " + ", ".join(f"spec.{path}" for path in unknown)
        )
    spec = nc.spec
    # The API server's CEL rules on the counts (api/nodecluster.py), said as it says them.
    if (
        spec.min_nodes is not None
        and spec.max_nodes is not None
        and spec.min_nodes > spec.max_nodes
    ):
        raise PlanError("invalid NodeCluster: spec.minNodes: must not exceed spec.maxNodes")
    if spec.min_nodes is not None and spec.target_nodes < spec.min_nodes:
        raise PlanError("invalid NodeCluster: spec.targetNodes: must be at least spec.minNodes")
    if spec.max_nodes is not None and spec.target_nodes > spec.max_nodes:
        raise PlanError("invalid NodeCluster: spec.targetNodes: must not exceed spec.maxNodes")
    return nc


def unknown_fields(raw: Any, known: Any, path: str = "") -> list[str]:
    """Keys of `raw` that the validated model does not have (typos the API server would
    silently prune: `targetNode: 5` must not preview as "no change")."""
    out: list[str] = []
    if isinstance(raw, Mapping) and isinstance(known, Mapping):
        free = not known or all(not isinstance(v, Mapping | list) for v in known.values())
        for key, value in raw.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in known:
                if not (free and isinstance(value, str)):  # (a map of strings: labels)
                    out.append(where)
                continue
            out += unknown_fields(value, known[key], where)
    elif isinstance(raw, list) and isinstance(known, list):
        for i, (r, k) in enumerate(zip(raw, known, strict=False)):
            out += unknown_fields(r, k, f"{path}[{i}]")
    return out


@dataclass(frozen=True)
class Report:
    """What the command prints, and whether it shows a change."""

    text: str
    changed: bool


async def plan_report(
    manifest: Mapping[str, Any],
    namespace: str | None,
    output: Output,
    kubeconfig: str | None,
    now: datetime | None = None,
) -> Report:
    """Connect like kubectl, read, preview, render."""
    import aiohttp
    from kubernetes_asyncio.config import ConfigException

    from nodecluster.controllers.kube import KubeClient
    from nodecluster.usagereport import context_namespace

    changed = validated(manifest)
    ns = resolve_namespace(changed, namespace, lambda: context_namespace(kubeconfig))
    try:
        client = await KubeClient.connect(max_connections=4, kubeconfig=kubeconfig)
    except (ConfigException, OSError, aiohttp.ClientError) as err:
        raise PlanError(f"cannot load the kubeconfig: {err}") from None
    try:
        p, unknown = await read_and_preview(client, changed, ns, now or datetime.now(UTC))
    finally:
        await client.close()
    text = render_json(p, ns, unknown) if output == "json" else render_text(p, ns, unknown)
    return Report(text, p.changed)


def resolve_namespace(nc: NodeCluster, flag: str | None, context: Callable[[], str]) -> str:
    """The manifest's namespace, else the flag's, else the context's; both given and
    different is an error (as kubectl apply says it)."""
    own = nc.metadata.namespace
    if own and flag and own != flag:
        raise PlanError(
            f"the namespace of the manifest ({own}) does not match the namespace given "
            f"with -n ({flag})"
        )
    return own or flag or context()


async def read_and_preview(
    api: KubeApi, changed_nc: NodeCluster, namespace: str, now: datetime
) -> tuple[Preview, list[str]]:
    """Read the live cluster, its nodes and its provider through `api` (a KubeApi), and
    preview `changed_nc` over them. Returns the preview and what it cannot know."""
    import aiohttp

    from nodecluster.controllers.kubeapi import (
        CLUSTERNODES,
        NODECLUSTERS,
        NODEPROVIDERS,
        KubeError,
        KubeNotFound,
    )
    from nodecluster.controllers.planinput import declared_of, listed_nodes, observed_of

    name = changed_nc.metadata.name
    try:
        try:
            body = await api.get(NODECLUSTERS, namespace, name)
        except KubeNotFound:
            raise PlanError(
                f"NodeCluster {namespace}/{name} not found: plan previews a change to an "
                "existing cluster (a new one is created with kubectl apply, and makes "
                f"spec.targetNodes nodes: {changed_nc.spec.target_nodes})"
            ) from None
        live_nc = NodeCluster.model_validate(body)
        nodes = listed_nodes(await api.list(CLUSTERNODES, namespace), name)
        provider_name = live_nc.spec.provider_ref.name
        provider_hidden = False
        try:
            provider: NodeProvider | None = NodeProvider.model_validate(
                await api.get(NODEPROVIDERS, None, provider_name)
            )
        except KubeNotFound:
            provider = None
        except KubeError as err:
            if err.status != 403:
                raise
            # Bound per namespace, a user cannot read cluster-scoped providers: plan
            # without it, and say so.
            provider, provider_hidden = None, True
    except KubeError as err:
        if err.status in (401, 403):
            raise PlanError(
                f"the API server refused a read ({err.status}): plan needs get on "
                "nodeclusters and nodeproviders and list on clusternodes "
                f"({err.message.strip()[:300]})"
            ) from None
        raise PlanError(f"reading from the API server failed: {err}") from None
    except (aiohttp.ClientError, OSError) as err:
        raise PlanError(f"cannot reach the API server: {err}") from None
    if changed_nc.spec.provider_ref.name != provider_name:
        raise PlanError(
            "invalid change: spec.providerRef is immutable (the live cluster uses "
            f"NodeProvider {provider_name!r}; the manifest names "
            f"{changed_nc.spec.provider_ref.name!r})"
        )
    # The changed spec on the live object: its generation, deletion and status stay.
    changed = live_nc.model_copy(update={"spec": changed_nc.spec})
    problem: tuple[Reason, str] | None = None
    refuses: tuple[Reason, str] | None = None
    if provider is None and not provider_hidden:
        problem = (Reason.PROVIDER_NOT_FOUND, f"NodeProvider {provider_name!r} does not exist")
    elif provider is not None and provider.metadata.deletion_timestamp is not None:
        refuses = (
            Reason.PROVIDER_DELETING,
            f"NodeProvider {provider_name!r} is being deleted: it gives no new machines",
        )
    observed = observed_of(
        live_nc,
        nodes,
        now,
        headroom=None,
        provider_problem=problem,
        no_new_machines=refuses,
        seed=0,
        watching_nodes=False,
    )
    result = preview(declared_of(live_nc), declared_of(changed), observed)
    unknown = cannot_know(result, provider, nodes)
    if provider_hidden:
        unknown.insert(
            0,
            f"NodeProvider {provider_name}: not readable with your credentials (get "
            "nodeproviders, cluster-scoped): its quotas and whether it gives new machines "
            "are not considered",
        )
    return result, unknown


def cannot_know(p: Preview, provider: NodeProvider | None, nodes: Sequence[NodeView]) -> list[str]:
    """What the preview does not know, said rather than assumed away."""
    out: list[str] = []
    if provider is not None:
        quotas = provider.spec.quotas
        limits = [
            f"{label} {value}"
            for label, value in (
                ("maxNodes", quotas.max_nodes),
                ("maxCores", quotas.max_cores),
                ("maxHourlyCost", quotas.max_hourly_cost),
            )
            if value is not None
        ]
        if limits and p.creates:
            # (Not the provider's status figures: they are each installation's, and late.)
            out.append(
                f"NodeProvider {provider.metadata.name} has quotas ({', '.join(limits)}): "
                "creates beyond the room left when they are made wait for it (not checked here)"
            )
        if provider.status.phase == "NotReady":
            out.append(
                f"NodeProvider {provider.metadata.name} is NotReady now: no machine is "
                "created or deleted through it until it is Ready"
            )
    if p.creates:
        out.append(
            "whether the provider has the capacity when each node is created (a refusal "
            "is retried, or falls back per policies.capacityFallback)"
        )
    hooks = any(c.path.startswith("policies.lifecycleHooks") for c in p.spec_changes)
    if hooks or (p.creates and any(n.hook for n in nodes)):
        out.append("how long lifecycle hooks hold each node (until completed or timed out)")
    if p.creates:
        out.append("the names of new nodes: the operator chooses them when it creates them")
    out.append(
        "health changes before the change is applied (a Node's readiness, judged with "
        "run --nodes, is not judged here)"
    )
    return out


_MOVED = {True: "returned to the warm pool", False: "promoted from the warm pool"}


def _zone(zone: str | None) -> str:
    return zone if zone is not None else "(no zone)"


def _value(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, separators=(", ", ": "))


def render_text(p: Preview, namespace: str, unknown: Sequence[str]) -> str:
    """The preview for people: the verdict on machines first, then per zone, the batches,
    what blocks or waits, and what cannot be known."""
    out = [replacement_summary(p), ""]
    out.append(f"NodeCluster {namespace}/{p.cluster}:")
    if p.spec_changes:
        out.append("  spec changes:")
        out += [f"    {c.path}: {_value(c.before)} -> {_value(c.after)}" for c in p.spec_changes]
    else:
        out.append("  spec: unchanged")
    before, after = len(serving(p.before)), len(serving(p.after))
    out.append(
        f"  nodes: {before} -> {after} (desired {p.desired}): {p.creates} to create, "
        f"{len(p.deletes)} to delete ({len(p.replaced)} of them replaced)"
    )
    warm_before, warm_after = warm_count(p.before), warm_count(p.after)
    if warm_before or warm_after or p.warm_creates or p.moves:
        promoted = sum(1 for _, warm in p.moves if not warm)
        out.append(
            f"  warm pool: {warm_before} -> {warm_after}: {p.warm_creates} to create, "
            f"{promoted} promoted to serve, {len(p.moves) - promoted} returned to it"
        )
    zones = p.zones()
    if not p.deletions_certain:
        out.append(
            "  policies.deletion.criteria is Random: the operator draws which equal nodes go "
            "when it deletes them; the nodes named below are one possible draw, and the "
            "zones after may differ with it"
        )
    if p.batches:
        out.append("")
        out.append("Per zone:")
        for z in zones:
            out.append(f"  {_zone(z.zone)}: {z.before} -> {z.after} nodes")
            if z.creates:
                out.append(f"    + {z.creates} new node{'s' if z.creates != 1 else ''}")
            out += [f"    - {name}  ({cause_text(why)})" for name, why in z.deletes]
            out += [f"    ~ {name}  power -> {state}" for name, state in z.power]
            out += [f"    ~ {name}  reboot" for name in z.reboots]
            if z.warm_creates:
                plural = "s" if z.warm_creates != 1 else ""
                out.append(f"    + {z.warm_creates} new warm node{plural} (the pool's refill)")
            out += [f"    ~ {name}  {_MOVED[warm]}" for name, warm in z.moves]
        out.append("")
        out.append(
            f"Batches ({len(p.batches)}; each starts once the one before is done: new nodes "
            "ready, deleted nodes gone):"
        )
        for i, batch in enumerate(p.batches, 1):
            out.append(f"  {i}. {batch_text(batch.plan, batch.zones)}")
        if not p.settled:
            out.append(
                f"  ... the planner still had changes after {len(p.batches)} batches: "
                "the cluster may not settle (see the blockers)"
            )
    else:
        out.append("")
        out.append("No node is created, deleted, powered or rebooted.")
    if p.blockers:
        out.append("")
        out.append("Blocked (the plan does less than the spec asks):")
        out += [f"  {b.reason}: {b.message}" for b in p.blockers]
    if p.held:
        out.append("")
        out.append("Held back by spec.suspend:")
        out += [f"  {h.process}: {h.message}" for h in p.held]
    if not p.in_progress.empty:
        ip = p.in_progress
        out.append("")
        out.append(
            "Already under way under the live spec (not caused by this change; counted "
            f"above where the change keeps it): {len(ip.creates)} to create, "
            f"{len(ip.deletes)} to delete, {len(ip.power)} power changes, "
            f"{len(ip.reboots)} reboots"
        )
    out.append("")
    out.append("Not known here:")
    out += [f"  - {u}" for u in unknown]
    verdict = "changes" if p.changed else "no changes"
    out.append("")
    out.append(f"Plan: {verdict} (exit status {EXIT_CHANGES if p.changed else EXIT_NO_CHANGE}).")
    return "\n".join(out) + "\n"


def batch_text(plan: Plan, zones: Mapping[str, str | None]) -> str:
    """One batch in a line: creates per zone, deletes by name, power changes, reboots."""
    parts: list[str] = []
    per_zone: dict[str | None, int] = {}
    for c in plan.creates:
        if not c.warm:
            per_zone[c.zone] = per_zone.get(c.zone, 0) + 1
    if per_zone:
        where = ", ".join(
            f"{n} in {_zone(z)}" for z, n in sorted(per_zone.items(), key=lambda i: _zone(i[0]))
        )
        parts.append(f"create {sum(per_zone.values())} ({where})")
    if plan.deletes:
        parts.append(
            "delete "
            + ", ".join(f"{d.name} ({_zone(zones.get(d.name))}, {d.reason})" for d in plan.deletes)
        )
    if plan.power:
        parts.append("power " + ", ".join(f"{s.name} -> {s.power_state}" for s in plan.power))
    if plan.reboots:
        parts.append("reboot " + ", ".join(r.name for r in plan.reboots))
    warm = sum(1 for c in plan.creates if c.warm)
    if warm:
        parts.append(f"create {warm} warm")
    promoted = [m.name for m in plan.moves if not m.warm]
    returned = [m.name for m in plan.moves if m.warm]
    if promoted:
        parts.append("promote " + ", ".join(promoted))
    if returned:
        parts.append("return to the pool " + ", ".join(returned))
    return "; ".join(parts)


def document(p: Preview, namespace: str, unknown: Sequence[str]) -> dict[str, Any]:
    """The JSON document (schema in the module docstring)."""
    zone_of: dict[str, str | None] = {}
    for b in p.batches:
        zone_of.update(b.zones)

    def deletes(plan: Plan) -> list[dict[str, Any]]:
        return [
            {"node": d.name, "zone": zone_of.get(d.name), "reason": d.reason} for d in plan.deletes
        ]

    def power(plan: Plan) -> list[dict[str, Any]]:
        return [
            {"node": s.name, "zone": zone_of.get(s.name), "powerState": s.power_state}
            for s in plan.power
        ]

    def reboots(plan: Plan) -> list[dict[str, Any]]:
        return [{"node": r.name, "zone": zone_of.get(r.name)} for r in plan.reboots]

    def moves(plan: Plan) -> list[dict[str, Any]]:
        return [{"node": m.name, "zone": zone_of.get(m.name), "warm": m.warm} for m in plan.moves]

    batches = [
        {
            "creates": [
                {"zone": c.zone, "machineType": c.machine_type or None, "warm": c.warm}
                for c in b.plan.creates
            ],
            "deletes": deletes(b.plan),
            "powerChanges": power(b.plan),
            "reboots": reboots(b.plan),
            "moves": moves(b.plan),
        }
        for b in p.batches
    ]
    ip = p.in_progress
    return {
        "kind": "NodeClusterPlan",
        "version": 1,
        "cluster": {"namespace": namespace, "name": p.cluster},
        "changed": p.changed,
        "replacesMachines": p.replaces_machines,
        "summary": replacement_summary(p),
        "specChanges": [
            {"path": c.path, "before": c.before, "after": c.after} for c in p.spec_changes
        ],
        "nodes": {
            "before": len(serving(p.before)),
            "after": len(serving(p.after)),
            "desired": p.desired,
            "warmBefore": warm_count(p.before),
            "warmAfter": warm_count(p.after),
        },
        "creates": p.creates,
        "warmCreates": p.warm_creates,
        "moves": [m for b in batches for m in b["moves"]],
        "deletes": [d for b in batches for d in b["deletes"]],
        "deletionsCertain": p.deletions_certain,
        "powerChanges": [s for b in batches for s in b["powerChanges"]],
        "reboots": [r for b in batches for r in b["reboots"]],
        "zones": [
            {
                "zone": z.zone,
                "before": z.before,
                "after": z.after,
                "creates": z.creates,
                "warmCreates": z.warm_creates,
                "deletes": [{"node": n, "reason": why} for n, why in z.deletes],
                "powerChanges": [{"node": n, "powerState": s} for n, s in z.power],
                "reboots": list(z.reboots),
                "moves": [{"node": n, "warm": warm} for n, warm in z.moves],
            }
            for z in p.zones()
        ],
        "batches": batches,
        "settled": p.settled,
        "blockers": [{"reason": str(b.reason), "message": b.message} for b in p.blockers],
        "held": [{"process": h.process, "message": h.message} for h in p.held],
        "inProgress": {
            "creates": len(ip.creates),
            "deletes": len(ip.deletes),
            "powerChanges": len(ip.power),
            "reboots": len(ip.reboots),
        },
        "unknown": list(unknown),
    }


def render_json(p: Preview, namespace: str, unknown: Sequence[str]) -> str:
    """The preview for tools."""
    return json.dumps(document(p, namespace, unknown), indent=2) + "\n"
