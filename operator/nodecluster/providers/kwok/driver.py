"""The `kwok` driver: machines are fake Kubernetes Nodes that kwok makes Ready.

What it is for: trying the operator, and testing it at scale or with Node integration
(nodeRef, labels and taints, drains), on any cluster and without a cloud. A machine is a
Node object: `create` posts one (carrying the machine's identity as labels and annotations
and a `kwok://<name>` provider id), kwok notices it and, running this package's stages
(`stages.yaml`), makes it Ready as a kubelet would; `delete` deletes it. So `kubectl get
nodes` shows a NodeCluster's machines, and pods can be bound to them.

Power is a pair of annotations the stages read (nodes.py): stop sets `nodecluster.io/power:
Off` and a NoSchedule taint, and kwok turns the Node NotReady (`MachineStopped`); start
takes them away with a new boot id, and kwok boots the Node again; reboot changes only the
boot id: kwok turns the Node NotReady (`Rebooting`) and then Ready. Each is visible on the
Node, and `get` reads the state back from it.

Idempotent create: a Node's name is the machine name, so the API server itself refuses a
second Node of that name (409), and the driver answers with the one that exists, with the
tags it was made with (the operator then judges whose it is). A Node of that name that
this NodeProvider did not make (a real one, another provider's) is never taken: `get` and
`delete` do not see it, and `create` says so.

Limits (`capacity`, `quota`) are checked by counting this provider's Nodes before a create:
one list per create, so leave them unset for scale tests. They are not atomic (two creates
at once may both pass), as a cloud's quota check is not either to its callers; the
operator's own NodeProvider quotas (`spec.quotas`) are exact on their own.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    Machine,
    MachineSpec,
    MachineState,
    NotFound,
    ProviderConfig,
    ProviderError,
    QuotaExceeded,
    Retryable,
)
from nodecluster.providers.kwok.client import NodesClient, status_of
from nodecluster.providers.kwok.nodes import (
    BOOT_ID,
    POWER,
    POWER_OFF,
    POWER_ON,
    cores_of,
    is_providers,
    node_body,
    provider_selector,
    stopped_taint,
    to_machine,
    without_stopped_taint,
)
from nodecluster.providers.kwok.settings import KwokSettings, kubeconfig_from_secret

log = logging.getLogger(__name__)

PATCH_ATTEMPTS = 3
"""Tries of a conditional patch that meets a Node changed in between (kwok writes its
status, the node lifecycle controller its taints) before the call fails as Retryable."""


def new_boot_id() -> str:
    """A boot id: what kwok copies to `status.nodeInfo.bootID` when the boot is over."""
    return secrets.token_hex(8)


class KwokDriver:
    """The `kwok` driver. Also implements PowerControl (stop, start, reboot)."""

    def __init__(self, config: ProviderConfig, *, client: NodesClient | None = None) -> None:
        """`client`: a Nodes client to use instead of building one (tests)."""
        self.settings = KwokSettings.from_config(config)
        kubeconfig = kubeconfig_from_secret(config.credentials)
        if kubeconfig is not None and self.settings.kubeconfig is not None:
            raise InvalidConfig(
                "kwok driver config: config.kubeconfig and a kubeconfig in the credentials "
                "Secret both name an API server: keep one"
            )
        self._provider = config.name
        self._client = client or NodesClient(
            kubeconfig=kubeconfig,
            kubeconfig_path=self.settings.kubeconfig,
            context=self.settings.context,
        )

    def __repr__(self) -> str:
        return f"KwokDriver(provider={self._provider!r}, client={self._client!r})"

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    # -- lookups -----------------------------------------------------------------------

    async def _node(self, name: str) -> dict[str, Any] | None:
        """This provider's Node of that name, or None (none, or not this provider's)."""
        node = await self._client.get(name)
        if node is None or not is_providers(node, self._provider):
            return None
        return node

    async def _require(self, name: str) -> dict[str, Any]:
        node = await self._node(name)
        if node is None:
            raise NotFound(
                f"machine {name} does not exist (no Node of NodeProvider {self._provider!r})"
            )
        return node

    async def _nodes(self, cluster: str | None = None) -> list[dict[str, Any]]:
        nodes = await self._client.list(provider_selector(self._provider, cluster))
        return [node for node in nodes if is_providers(node, self._provider, cluster)]

    # -- the protocol ------------------------------------------------------------------

    async def create(self, spec: MachineSpec) -> Machine:
        """Create the Node named spec.name, or return the one that already is it."""
        machine_type = self.settings.machine_types.get(spec.machine_type)
        if machine_type is None:
            raise InvalidConfig(
                f"machine type {spec.machine_type!r} is not in the NodeProvider's "
                f"config.machineTypes ({sorted(self.settings.machine_types)})"
            )
        if spec.properties:
            raise InvalidConfig(
                f"profile.properties {sorted(spec.properties)} mean nothing to the kwok driver"
            )
        zone = self._zone(spec)
        if self.settings.limited:
            existing = await self._within_limits(spec.name, machine_type.cores)
            if existing is not None:
                return to_machine(existing)
        body = node_body(
            spec,
            provider=self._provider,
            zone=zone,
            shape=machine_type.shape(),
            boot_id=new_boot_id(),
            ready_delay_ms=round(self.settings.ready_delay_seconds * 1000),
        )
        created = await self._client.create(body)
        if created is not None:
            log.info("Provider %s: created Node %s in %s", self._provider, spec.name, zone)
            return to_machine(created)
        # 409: a Node of this name exists. Its own tags, never retagged: the operator then
        # sees whose it is (an earlier create of its own whose answer was lost, or not).
        node = await self._client.get(spec.name)
        if node is None:
            raise Retryable(f"the Node {spec.name} existed a moment ago and is gone: try again")
        if not is_providers(node, self._provider):
            raise ProviderError(
                f"a Node named {spec.name} exists and was not made by NodeProvider "
                f"{self._provider!r}; it is left alone"
            )
        return to_machine(node)

    def _zone(self, spec: MachineSpec) -> str:
        zones = self.settings.zones
        if spec.zone is None:
            # No placement asked for: a zone of the provider's, the same one every time.
            digest = hashlib.sha256(spec.name.encode()).digest()
            return zones[int.from_bytes(digest[:4], "big") % len(zones)]
        if spec.zone not in zones:
            raise InvalidConfig(
                f"zone {spec.zone!r} is not in the NodeProvider's config.zones ({list(zones)})"
            )
        return spec.zone

    async def _within_limits(self, name: str, cores: int) -> dict[str, Any] | None:
        """The existing Node of this name (a repeated create still answers at the limit),
        else None once the limits leave room for one more."""
        nodes = await self._nodes()
        for node in nodes:
            if node["metadata"]["name"] == name:
                return node
        live = [node for node in nodes if not node["metadata"].get("deletionTimestamp")]
        capacity, quota = self.settings.capacity, self.settings.quota
        if capacity is not None and len(live) + 1 > capacity:
            raise CapacityExceeded(
                f"NodeProvider {self._provider!r} is full: {len(live)} of {capacity} Nodes "
                "(config.capacity)"
            )
        if quota.max_nodes is not None and len(live) + 1 > quota.max_nodes:
            raise QuotaExceeded(
                f"machine quota reached: {len(live)} of {quota.max_nodes} (config.quota.maxNodes)"
            )
        used = sum(cores_of(node) for node in live)
        if quota.max_cores is not None and used + cores > quota.max_cores:
            raise QuotaExceeded(
                f"core quota reached: {used} of {quota.max_cores} cores in use, {cores} more "
                "asked for (config.quota.maxCores)"
            )
        return None

    async def delete(self, name: str) -> None:
        """Delete the Node; NotFound once it is gone."""
        node = await self._require(name)
        if node["metadata"].get("deletionTimestamp"):
            return  # being deleted (a finalizer holds it): NotFound once it is gone
        if await self._client.delete(name, node["metadata"]["uid"]):
            log.info("Provider %s: deleted Node %s", self._provider, name)
            return
        raise NotFound(f"machine {name} does not exist")

    async def get(self, name: str) -> Machine:
        """The machine's Node; NotFound when there is none."""
        return to_machine(await self._require(name))

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """This NodeProvider's Nodes of one cluster (`<namespace>/<cluster>`), or all.

        Not narrowed to an installation: the protocol does not say which, and the
        operator keeps only its own installation's machines (identity.collected_by)."""
        machines = [to_machine(node) for node in await self._nodes(cluster)]
        return sorted(machines, key=lambda m: m.name)

    async def stop(self, name: str) -> Machine:
        """Power off: `nodecluster.io/power: Off` and the stopped taint; kwok then makes
        the Node NotReady. Idempotent."""
        return await self._power(name, POWER_OFF, "stop")

    async def start(self, name: str) -> Machine:
        """Power on: the power annotation and the taint go, with a new boot id; kwok then
        boots the Node. Idempotent: a machine powered on is left as it is."""
        return await self._power(name, POWER_ON, "start")

    async def reboot(self, name: str) -> Machine:
        """A new boot id: kwok makes the Node NotReady (`Rebooting`), then Ready again.
        A stopped machine is started (as the simulator does): a reboot asks for a machine
        running afresh."""
        return await self._power(name, POWER_ON, "reboot")

    async def _power(self, name: str, power: str, action: str) -> Machine:
        for _ in range(PATCH_ATTEMPTS):
            node = await self._require(name)
            if node["metadata"].get("deletionTimestamp"):
                return to_machine(node)
            annotations: Mapping[str, str] = node["metadata"].get("annotations") or {}
            off = annotations.get(POWER) == POWER_OFF
            if action != "reboot" and off == (power == POWER_OFF):
                return to_machine(node)  # as asked already
            patch = _power_patch(node, power)
            try:
                patched = await self._client.patch(name, patch)
            except Retryable as err:
                if status_of(err) == 409:
                    continue  # the Node changed since it was read: read it again
                raise
            log.info("Provider %s: %s of Node %s", self._provider, action, name)
            state: MachineState | None = "Rebooting" if action == "reboot" and not off else None
            return to_machine(patched, state)
        raise Retryable(f"{action} {name}: the Node kept changing under the patch; try again")


def _power_patch(node: Mapping[str, Any], power: str) -> dict[str, Any]:
    """The conditional merge patch of a power change: annotations, and the whole taints
    list (a merge patch replaces lists), made from the Node as read, so the patch carries
    its resourceVersion and fails rather than drop a taint added in between."""
    taints = without_stopped_taint(node)
    annotations: dict[str, Any] = {POWER: power}
    if power == POWER_OFF:
        taints.append(stopped_taint())
    else:
        annotations[BOOT_ID] = new_boot_id()
    return {
        "metadata": {
            "resourceVersion": node["metadata"]["resourceVersion"],
            "annotations": annotations,
        },
        "spec": {"taints": taints or None},
    }
