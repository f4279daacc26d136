"""What identifies a machine: the ClusterNode it belongs to, in the installation that made it.

A machine belongs to exactly one ClusterNode of one installation (DESIGN principle 7).
Five things name that node, and every machine carries all of them as tags:

    nodecluster.io/installation  the operator installation (`run --installation-id`)
    nodecluster.io/namespace     the ClusterNode's namespace
    nodecluster.io/cluster       its NodeCluster's name
    nodecluster.io/node          the ClusterNode's name
    nodecluster.io/node-uid      the ClusterNode's uid

The installation is there because a cloud account outlives and is shared by more than one
operator (staging and production, two Kubernetes clusters, one release per team): names
and namespaces repeat across them, so without it each would take the other's machines for
its own, and its orphan collection would delete them. The uid is there because a name is
reused: a ClusterNode deleted and made again under its name is a new node, and must not
inherit a machine still being deleted for the old one.

The provider-side name, the idempotency key of `create`, is a pure function of the same
identity (`machine_name`): the node's name, cut to fit, and ten hex digits of a hash of
installation, namespace, node name and uid. It is unique across namespaces and
installations, and a lowercase DNS label of at most 63 characters, which every cloud this
project knows accepts as an instance name (GCE's limit is the tightest). Being a function
of the node, it is "chosen before the provider is called" by construction: after a crash
between create and recording it, the next reconcile computes the same name and create
returns the same machine. The ClusterNode records it in `status.machineName` for people,
and so that nodes of earlier versions (see below) keep their machine.

Ownership is decided from the tags, never from the name: a node attaches only to a
machine whose tags name it (`ownership_problem`); a machine answering to its name with other
tags belongs to someone else and is refused (`MachineOwnedElsewhere`), never adopted and
never deleted.

Earlier versions named a machine by the bare ClusterNode name and tagged it only with
`<namespace>/<cluster>` (`Machine.cluster`). Such a machine has no installation tag; a node
whose status has a provider id but no machine name is such a node, and keeps its bare-named
machine as long as that machine's cluster tag is the node's own (`legacy_owner_mismatch`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nodecluster.providers.base import Machine

INSTALLATION_TAG = "nodecluster.io/installation"
NAMESPACE_TAG = "nodecluster.io/namespace"
CLUSTER_TAG = "nodecluster.io/cluster"
NODE_TAG = "nodecluster.io/node"
NODE_UID_TAG = "nodecluster.io/node-uid"

MAX_NAME = 63
"""The longest provider-side name: a DNS label, GCE's instance name limit."""
HASH_DIGITS = 10
"""Hex digits of the identity hash: 40 bits, so a collision among a million machines of one
account is about as likely as one in a million draws (and still refused, by the tags)."""

_NOT_IN_A_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class MachineIdentity:
    """The node a machine belongs to, in the installation that made it."""

    installation: str
    namespace: str
    cluster: str
    node: str
    node_uid: str

    def tags(self) -> dict[str, str]:
        """The tags every machine of this node carries."""
        return {
            INSTALLATION_TAG: self.installation,
            NAMESPACE_TAG: self.namespace,
            CLUSTER_TAG: self.cluster,
            NODE_TAG: self.node,
            NODE_UID_TAG: self.node_uid,
        }

    def describe(self) -> str:
        """For people: `<namespace>/<cluster>/<node> of installation <id>`."""
        return f"{self.namespace}/{self.cluster}/{self.node} of installation {self.installation!r}"


CLUSTER_DIGITS = 8
"""Hex digits naming the Kubernetes cluster in a default installation id."""
MAX_INSTALLATION = 63
"""The longest installation id: a label value, which every cloud accepts as a tag value."""


def default_installation_id(name: str, cluster_uid: str) -> str:
    """The installation id when none is given: `<name>.<8 hex of the cluster's identity>`.

    `name` tells releases apart (the chart passes `<release namespace>.<release name>`);
    `cluster_uid`, the uid of the `kube-system` Namespace, tells Kubernetes clusters apart:
    it is made with the cluster and never changes, while release names repeat on every
    cluster of a fleet installed from one GitOps repository. Two installations then never
    share an id unless a person gives them one. A name too long to fit is cut and keeps a
    hash of its whole, so two long names still differ.
    """
    cluster = hashlib.sha256(cluster_uid.encode()).hexdigest()[:CLUSTER_DIGITS]
    room = MAX_INSTALLATION - CLUSTER_DIGITS - 1
    if len(name) > room:
        whole = hashlib.sha256(name.encode()).hexdigest()[:HASH_DIGITS]
        name = f"{name[: room - HASH_DIGITS - 1]}-{whole}"
    return f"{name}.{cluster}"


def machine_name(identity: MachineIdentity) -> str:
    """The provider-side name of a node's machine: `<node name, cut>-<10 hex>`.

    Lowercase letters, digits and '-', starting with a letter, at most 63 characters.
    """
    key = "/".join(
        (identity.installation, identity.namespace, identity.node, identity.node_uid)
    ).encode()
    digest = hashlib.sha256(key).hexdigest()[:HASH_DIGITS]
    prefix = _NOT_IN_A_LABEL.sub("-", identity.node.lower()).strip("-")
    if not prefix or not prefix[0].isalpha():
        prefix = f"n-{prefix}".rstrip("-")
    prefix = prefix[: MAX_NAME - HASH_DIGITS - 1].rstrip("-")
    return f"{prefix}-{digest}"


def owner_of(tags: Mapping[str, str]) -> str:
    """Who a machine's tags say it belongs to, for messages."""
    if INSTALLATION_TAG not in tags:
        return "no installation (untagged)"
    return (
        f"{tags.get(NAMESPACE_TAG, '?')}/{tags.get(CLUSTER_TAG, '?')}/{tags.get(NODE_TAG, '?')}"
        f" of installation {tags[INSTALLATION_TAG]!r}"
    )


def owner_mismatch(identity: MachineIdentity, tags: Mapping[str, str]) -> str | None:
    """None when the tags name exactly this node; else what they name instead."""
    wanted = identity.tags()
    if all(tags.get(key) == value for key, value in wanted.items()):
        return None
    return f"it belongs to {owner_of(tags)}, not {identity.describe()}"


def legacy_owner_mismatch(
    identity: MachineIdentity, name: str, cluster: str, tags: Mapping[str, str]
) -> str | None:
    """For a node of an earlier version: None when the machine under its bare name is one an
    earlier version made for its cluster (no installation tag, the node's own cluster tag);
    a machine with identity tags must name the node exactly."""
    if INSTALLATION_TAG in tags:
        return owner_mismatch(identity, tags)
    own = f"{identity.namespace}/{identity.cluster}"
    if name == identity.node and cluster == own:
        return None
    return f"it belongs to cluster {cluster} (made by an earlier version), not to {own}"


def ownership_problem(identity: MachineIdentity, machine: Machine) -> str | None:
    """None when `machine` is the node's; else whose it is instead (for the refusal)."""
    return legacy_owner_mismatch(identity, machine.name, machine.cluster, machine.tags)


def node_of(name: str, tags: Mapping[str, str]) -> str:
    """The ClusterNode a machine names: its node tag, or (made by an earlier version) its
    own name."""
    return tags.get(NODE_TAG) or name


def installation_of(tags: Mapping[str, str]) -> str | None:
    """The installation a machine was made by; None for an earlier version's."""
    return tags.get(INSTALLATION_TAG)


def collected_by(installation: str, serves: Callable[[str], bool], machine: Machine) -> bool:
    """Whether an installation may collect `machine` as an orphan: one it made, in a
    namespace it serves. A machine of an earlier version (no installation tag) counts as
    any installation's that serves its cluster tag's namespace: as before tags existed. A
    machine with neither (made without the operator) is nobody's to collect."""
    made_by = installation_of(machine.tags)
    if made_by is None and not machine.cluster:
        # Nothing claims it: made by a person or another tool (the simulator lists every
        # machine of its file), and an Adopt operation's to take, never anyone's to delete.
        return False
    if made_by is None:
        namespace = machine.cluster.partition("/")[0]
    elif made_by != installation:
        return False
    else:
        namespace = machine.tags.get(NAMESPACE_TAG, "")
    return serves(namespace)


IDENTITY_TAGS = (INSTALLATION_TAG, NAMESPACE_TAG, CLUSTER_TAG, NODE_TAG, NODE_UID_TAG)


def claimed_by(machine: Machine) -> str | None:
    """Whose a machine is, for an Adopt operation: None when nothing says it is anyone's
    (no identity tag, no cluster tag); else who, for the refusal. Any identity tag counts,
    not only a whole identity: a machine half tagged is someone's, never a stranger's."""
    if INSTALLATION_TAG in machine.tags:
        return f"it belongs to {owner_of(machine.tags)}"
    partial = sorted(key for key in IDENTITY_TAGS if key in machine.tags)
    if partial:
        return f"it carries the identity tag(s) {', '.join(partial)} of another owner"
    if machine.cluster:
        return f"it belongs to cluster {machine.cluster} (made by an earlier version)"
    return None
