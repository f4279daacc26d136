"""What a NodeProvider with `driver: kwok` says, checked once, before any call.

The config is a pydantic model with `extra="forbid"`, as the aws driver's: a misspelt key
(`machinetypes`, `zone`) would otherwise be dropped in silence. Every problem is reported at
once, named by its path under `config.`, in the NodeProvider's Ready condition
(`InvalidProviderConfig`).

Where the Nodes live: by default on the API server the operator itself runs against (its
in-cluster config, else its kubeconfig), so `kubectl get nodes` shows the machines next to
the NodeClusters. Another cluster is reached with `config.kubeconfig` (a path on the
operator's disk: for local runs) or with a kubeconfig in the credentials Secret (key
`kubeconfig`: for a cluster). A Secret's kubeconfig may hold only what it can carry itself
(a token, client certificate data): `exec` and `auth-provider` plugins and file paths are
refused, because whoever can write that Secret would otherwise run commands in the
operator's pod, or have it send a file of its disk (its own ServiceAccount token, say) to a
server of their choosing. Only key names ever appear in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from nodecluster.providers.base import InvalidConfig, ProviderConfig
from nodecluster.providers.kwok.nodes import Shape

KUBECONFIG_KEY = "kubeconfig"
"""The one key the credentials Secret may have: a kubeconfig (YAML)."""

LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN)]
"""Machine type and zone names become Node labels (`node.kubernetes.io/instance-type`,
`topology.kubernetes.io/zone`), so they must be label values."""

FILE_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")
"""kubeconfig fields naming files: refused in a Secret's kubeconfig."""
PLUGIN_KEYS = ("exec", "auth-provider")
"""kubeconfig fields that run code or fetch tokens: refused in a Secret's kubeconfig."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", frozen=True, validate_by_name=False
    )


class MachineType(_Model):
    """What one machine of a type has: the capacity and allocatable of its Node."""

    cores: int = Field(ge=1, le=4096)
    """CPU cores (the Node's `cpu`; also what a machine counts for `quota.maxCores`)."""
    memory_mib: int = Field(ge=1, le=64 * 1024 * 1024)
    """Memory in MiB (the Node's `memory`)."""
    pods: int = Field(default=110, ge=1, le=100_000)
    """Most pods on the Node (a kubelet's default is 110)."""

    def shape(self) -> Shape:
        """The Node capacity of this type."""
        return Shape(cores=self.cores, memory_mib=self.memory_mib, pods=self.pods)


class Quota(_Model):
    """Limits of the fake account, as a cloud's service quotas (QuotaExceeded)."""

    max_nodes: int | None = Field(default=None, ge=0)
    max_cores: int | None = Field(default=None, ge=0)


class KwokSettings(_Model):
    """The driver's `spec.config` keys (camelCase in the NodeProvider)."""

    machine_types: dict[LabelValue, MachineType] = Field(min_length=1)
    """Machine type name -> its cores and memory. A NodeCluster's `profile.machineType`
    must be one of these."""
    zones: tuple[LabelValue, ...] = Field(min_length=1)
    """Zone names (the Nodes' `topology.kubernetes.io/zone`); NodeClusters place nodes in
    them (`policies.placement.zones`)."""
    kubeconfig: str | None = Field(default=None, min_length=1)
    """Path of a kubeconfig on the operator's disk naming the API server the Nodes go to
    (default: the operator's own API server)."""
    context: str | None = Field(default=None, min_length=1)
    """The kubeconfig's context to use (default: its current context)."""
    ready_delay_seconds: float = Field(default=0.0, ge=0, le=3600)
    """How long kwok takes to boot a Node (created, started or rebooted) before it is
    Ready: a provisioning time, for scale tests that want one."""
    capacity: int | None = Field(default=None, ge=0)
    """How many Nodes this provider has room for (CapacityExceeded beyond): a full cloud,
    to try the operator's handling of one."""
    quota: Quota = Field(default_factory=Quota)
    """Account limits (QuotaExceeded beyond)."""

    @field_validator("zones")
    @classmethod
    def _distinct(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        doubled = sorted({zone for zone in zones if zones.count(zone) > 1})
        if doubled:
            raise ValueError(f"zones are listed twice: {doubled}")
        return zones

    @property
    def limited(self) -> bool:
        """Whether a create must count this provider's Nodes first."""
        return (
            self.capacity is not None
            or self.quota.max_nodes is not None
            or self.quota.max_cores is not None
        )

    @classmethod
    def from_config(cls, config: ProviderConfig) -> KwokSettings:
        """Parse `spec.config`; InvalidConfig names every problem."""
        try:
            return cls.model_validate(dict(config.config))
        except ValidationError as err:
            problems = "; ".join(_explain(error) for error in err.errors())
            raise InvalidConfig(f"kwok driver config: {problems}") from None


def _known(model: type[BaseModel]) -> str:
    return ", ".join(sorted(f.alias or n for n, f in model.model_fields.items()))


def _explain(error: ErrorDetails) -> str:
    loc = error["loc"]
    path = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        if len(loc) == 1:
            return f"config.{path}: unknown key (known: {_known(KwokSettings)})"
        if loc[0] == "quota":
            return f"config.{path}: unknown key (known: {_known(Quota)})"
        if loc[0] == "machineTypes":
            return f"config.{path}: unknown key (known: {_known(MachineType)})"
        return f"config.{path}: unknown key"
    if error["type"] == "missing":
        return f"config.{path}: required"
    if error["type"] == "string_pattern_mismatch":
        return f"config.{path}: not a label value (at most 63 letters, digits, '-', '_', '.')"
    return f"config.{path}: {error['msg']}"


def kubeconfig_from_secret(credentials: Mapping[str, str]) -> dict[str, Any] | None:
    """The kubeconfig in the NodeProvider's Secret, or None (no Secret)."""
    if not credentials:
        return None
    unknown = sorted(set(credentials) - {KUBECONFIG_KEY})
    if unknown:
        raise InvalidConfig(
            f"the credentials Secret has keys the kwok driver does not read: {unknown}; "
            f"it reads [{KUBECONFIG_KEY!r}] (a kubeconfig)"
        )
    raw = credentials.get(KUBECONFIG_KEY) or ""
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        parsed = None  # the parser's message may quote the content: not shown
    if not isinstance(parsed, dict) or not parsed.get("clusters"):
        raise InvalidConfig(
            f"the credentials Secret's key {KUBECONFIG_KEY!r} is not a kubeconfig "
            "(YAML with clusters, users and contexts)"
        )
    problems = _self_contained(parsed)
    if problems:
        raise InvalidConfig(
            f"the kubeconfig in the credentials Secret must carry everything itself: "
            f"{'; '.join(problems)}"
        )
    return parsed


def _self_contained(kubeconfig: Mapping[str, Any]) -> list[str]:
    """What in a Secret's kubeconfig would read files or run code (named, never shown)."""
    problems: list[str] = []
    for section, entry in (("clusters", "cluster"), ("users", "user")):
        for item in kubeconfig.get(section) or ():
            if not isinstance(item, dict):
                continue
            body = item.get(entry) or {}
            name = item.get("name", "?")
            for key in FILE_KEYS:
                if key in body:
                    problems.append(
                        f"{section}[{name}].{key} names a file (use {key}-data)"
                        if key != "tokenFile"
                        else f"{section}[{name}].tokenFile names a file (use token)"
                    )
            for key in PLUGIN_KEYS:
                if key in body:
                    problems.append(f"{section}[{name}].{key} would run a plugin (use a token)")
    return problems
