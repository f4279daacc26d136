"""The reasons the operator writes in conditions, and what each one means for its behaviour.

A condition's `reason` is API: Argo CD health checks, alerts and scripts switch on it. So
the words live in one `StrEnum`, and so does what the controllers and the planner do
about each: whether it stalls a cluster (a person must act), whether it marks a node as
erroring, whether it is the machine's own fault (remediation would help) and whether it
passes by itself (retry). Before, four modules each kept their own set of strings and a
misspelt reason silently fell out of all of them; now mypy catches it.

Drivers raise typed errors (`providers/base.py`); each error type names its reason here,
so the controllers decide retry versus report from the type, never from a message.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a condition is as it is. The value is the CamelCase word written to the API."""

    # The provider, or what the operator asks of it.
    PROVIDER_NOT_FOUND = "ProviderNotFound"
    """The NodeProvider a cluster or node names does not exist."""
    INVALID_PROVIDER_CONFIG = "InvalidProviderConfig"
    """Driver config, credentials, user data or profile are wrong: retrying cannot help."""
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    """A passing provider fault: timeout, throttling, a 5xx. Retried with backoff."""
    PROVIDER_UNAUTHORIZED = "ProviderUnauthorized"
    """The provider refused the credentials (expired, revoked, not yet valid). Not a stall:
    the Secret is read again before the next call, so a rotation clears by itself;
    credentials that stay refused are reported until a person fixes the Secret."""
    PROVIDER_DELETING = "ProviderDeleting"
    """The NodeProvider is being deleted: it gives no new machines (as a namespace being
    deleted takes no new objects), while what exists is still stopped, started and
    deleted through it. A cluster that needs new machines cannot get them there again."""
    PROVIDER_IN_USE = "ProviderInUse"
    """A NodeProvider being deleted is held by this installation's finalizer until its
    NodeClusters and ClusterNodes are gone (its status names them)."""
    PROVIDER_ERROR = "ProviderError"
    """A provider error of no more specific type."""
    QUOTA_EXCEEDED = "QuotaExceeded"
    """An account or NodeProvider quota forbids more machines or cores."""
    COST_LIMIT_EXCEEDED = "CostLimitExceeded"
    """The NodeProvider's quotas.maxHourlyCost forbids another machine: the cost per hour
    of the machines held plus this one would exceed it."""
    CAPACITY_EXCEEDED = "CapacityExceeded"
    """The provider has no room for this machine type or zone right now."""
    CAPACITY_EXHAUSTED = "CapacityExhausted"
    """CapacityFallback=True, and its Warning Event: the provider refused a choice of
    policies.capacityFallback for capacity; new nodes use the next one meanwhile."""
    NOT_FOUND = "NotFound"
    """The machine does not exist at the provider."""
    MACHINE_MISSING = "MachineMissing"
    """A machine that existed has vanished at the provider."""
    MACHINE_OWNED_ELSEWHERE = "MachineOwnedElsewhere"
    """The machine answering to the node's name is tagged for another node, namespace or
    operator installation: refused, never adopted nor deleted. A person must look (a
    ClusterNode copied with its status, an installation id that changed)."""
    SECRET_NOT_FOUND = "SecretNotFound"
    """Ready=False of a NodeClusterReceiver: its tokenSecretRef names no Secret."""
    SECRET_NOT_READABLE = "SecretNotReadable"
    """Ready=False of a NodeClusterReceiver: the operator may not read its token Secret
    (the chart's rbac.secretNamespaces does not name the receiver's namespace)."""
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    """Ready=False of a NodeClusterReceiver: the Secret has no such key, or it is empty."""
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    """Ready=False of a NodeClusterReceiver: the NodeCluster it names does not exist."""
    API_REFUSED = "APIRefused"
    """The API server refused a write of the operator's (400, 403, 404, 422): RBAC,
    admission or a value it will not take. Needs a person."""
    API_UNAVAILABLE = "APIUnavailable"
    """An API call failed in passing (409, 429, 5xx, no answer): retried with backoff."""
    RECONCILE_ERROR = "ReconcileError"
    """The reconcile failed for a reason the operator does not know (a bug): retried."""
    DRIVER_READY = "DriverReady"
    """The NodeProvider's driver was built and answers."""
    MACHINE_RUNNING = "MachineRunning"
    """The node's machine runs as asked."""

    # Lifecycle hooks (api/hooks.py).
    LAUNCH_HOOK_WAIT = "LaunchHookWait"
    """The machine runs; the node waits on a Launch hook (Pending:Wait), not Ready."""
    TERMINATE_HOOK_WAIT = "TerminateHookWait"
    """The node is deleted; its machine waits on a Terminate hook (Terminating:Wait)."""
    INVALID_HOOK_RESULT = "InvalidHookResult"
    """The hook's annotation says neither Continue nor Abandon: still waiting."""
    LAUNCH_HOOKS_COMPLETED = "LaunchHooksCompleted"
    """Every Launch hook completed with Continue (or timed out to it)."""
    TERMINATE_HOOKS_COMPLETED = "TerminateHooksCompleted"
    """The Terminate hooks completed (or timed out, or one said Abandon): the machine goes."""
    LAUNCH_ABANDONED = "LaunchAbandoned"
    """A Launch hook said Abandon (or timed out to it): the machine was deleted, a failed
    launch, and the cluster replaces the node whatever its recovery policy."""

    # The planner's verdicts.
    PROTECTED_FROM_SCALE_IN = "ProtectedFromScaleIn"
    """Nodes that should go are annotated nodecluster.io/protect-from-scale-in."""
    TOO_MANY_UNHEALTHY = "TooManyUnhealthy"
    """More nodes are unhealthy than maxUnhealthy: remediation waits."""
    UNHEALTHY_NODES = "UnhealthyNodes"
    """Some nodes are unhealthy and being remediated."""
    PAUSED = "Paused"
    """spec.paused: nothing is changed."""
    ADOPTING = "Adopting"
    """An Adopt operation is creating the nodes of the machines it adopts (its target is
    raised already): no other node is made until they exist. Passes by itself."""
    CHANGES_HELD_BACK = "ChangesHeldBack"
    """A process named in spec.suspend holds back a change the declaration needs (the
    Suspended condition says which): not converged, but not stalled either, as the owner
    asked for it."""
    PROCESSES_SUSPENDED = "ProcessesSuspended"
    """Suspended=True: spec.suspend names processes, and none of them holds anything back."""

    # The warm pool (api/warmpool.py): its WarmPool condition, beside the reasons above
    # that say why its refill is held short (QuotaExceeded, CostLimitExceeded, ...).
    WARM_POOL_FULL = "WarmPoolFull"
    """WarmPool=True: the pool holds its size of warm nodes, each ready to promote."""
    WARM_POOL_FILLING = "WarmPoolFilling"
    """WarmPool=False: warm nodes are being made, launched, stopped or replaced."""

    # Resting values of the kstatus conditions.
    CONVERGED = "Converged"
    """Ready/Reconciling: everything matches the declaration."""
    PROGRESSING = "Progressing"
    """Stalled=False: nothing blocks progress."""
    AS_EXPECTED = "AsExpected"
    """Degraded=False: nothing is broken."""

    @property
    def stalls(self) -> bool:
        """Whether it stops a cluster until a person acts (Stalled=True)."""
        return self in _STALLS

    @property
    def marks_node_error(self) -> bool:
        """Whether a node whose Ready condition says it is erroring (not just settling)."""
        return self in _NODE_ERRORS

    @property
    def machine_fault(self) -> bool:
        """Whether a node erroring for it is itself broken, so that replacing the machine
        could help. Quota, capacity, configuration and refused credentials are not the
        machine's fault: recreating it would only fail the same way, over and over."""
        return self not in _NOT_THE_MACHINES_FAULT


_STALLS = frozenset(
    {
        Reason.INVALID_PROVIDER_CONFIG,
        Reason.PROVIDER_NOT_FOUND,
        Reason.PROVIDER_DELETING,
        Reason.QUOTA_EXCEEDED,
        Reason.COST_LIMIT_EXCEEDED,
        Reason.CAPACITY_EXCEEDED,
        Reason.PROTECTED_FROM_SCALE_IN,
        Reason.MACHINE_OWNED_ELSEWHERE,
        Reason.API_REFUSED,
    }
)
_NODE_ERRORS = frozenset(
    {
        Reason.PROVIDER_UNAVAILABLE,
        Reason.PROVIDER_UNAUTHORIZED,
        Reason.CAPACITY_EXCEEDED,
        Reason.QUOTA_EXCEEDED,
        Reason.COST_LIMIT_EXCEEDED,
        Reason.INVALID_PROVIDER_CONFIG,
        Reason.PROVIDER_NOT_FOUND,
        Reason.PROVIDER_DELETING,
        Reason.MACHINE_MISSING,
        Reason.LAUNCH_ABANDONED,
        Reason.PROVIDER_ERROR,
        Reason.MACHINE_OWNED_ELSEWHERE,
    }
)
_NOT_THE_MACHINES_FAULT = frozenset(
    {
        Reason.QUOTA_EXCEEDED,
        Reason.COST_LIMIT_EXCEEDED,
        Reason.CAPACITY_EXCEEDED,
        Reason.INVALID_PROVIDER_CONFIG,
        Reason.PROVIDER_UNAUTHORIZED,
        Reason.PROVIDER_DELETING,
        # Replacing the node would leave the machine to its owner and make a new one:
        # after an installation id changed, a second fleet. A person decides.
        Reason.MACHINE_OWNED_ELSEWHERE,
    }
)


def reason_of(word: str | None) -> Reason | None:
    """The Reason a word read back from the API stands for, if it is one of ours."""
    if word is None:
        return None
    try:
        return Reason(word)
    except ValueError:
        return None
