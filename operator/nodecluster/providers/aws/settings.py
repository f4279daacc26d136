"""What a NodeProvider with `driver: aws` says, checked once, before any call to EC2.

The config is a pydantic model with `extra="forbid"`: a misspelt key (`securityGroupIDs`,
`subnet`) would otherwise be dropped in silence and the instances launched without it, in
the default VPC's security group, which is how machines end up open to the world. Every
problem is reported at once, each named by its path under `config.`, and the NodeProvider
shows them in its Ready condition (`InvalidProviderConfig`).

The credentials come from the NodeProvider's Secret (`credentialsSecretRef`), with the key
names of the AWS environment variables, so `kubectl create secret generic --from-env-file`
of the usual file works; with no Secret the SDK's default chain is used (IRSA, EKS Pod
Identity, the node's instance profile). Only key names ever appear in a message.

This module does not import the SDK: it is loaded (and its errors reported) even where the
`aws` extra is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from nodecluster.api.fallback import CapacityType as ProfileCapacityType
from nodecluster.providers.base import InvalidConfig, ProviderConfig

ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"
CREDENTIAL_KEYS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
"""The Secret keys the driver reads: the names of the AWS environment variables."""

CapacityType = Literal["on-demand", "spot"]

MARKETS: Mapping[ProfileCapacityType, CapacityType] = {"OnDemand": "on-demand", "Spot": "spot"}
"""A profile's capacityType (the API's words) as EC2 says it."""

SubnetId = Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]
SecurityGroupId = Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]
IMAGE_PATTERN = r"^(ami-[0-9a-f]{8,17}|resolve:ssm:\S+)$"
ImageRef = Annotated[str, Field(pattern=IMAGE_PATTERN)]
"""An AMI id, or `resolve:ssm:<parameter>` (RunInstances resolves an SSM parameter, e.g.
the latest Amazon Linux image, at launch)."""
ZoneName = Annotated[str, Field(min_length=1, max_length=63)]


class AwsSettings(BaseModel):
    """The driver's `spec.config` keys (camelCase in the NodeProvider)."""

    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", frozen=True, validate_by_name=False
    )

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
    """The region, e.g. `eu-west-1`. Required: the pod's environment must not decide where
    machines are made."""
    subnets: dict[ZoneName, SubnetId] = Field(min_length=1)
    """Placement zone name -> the subnet its machines are launched in. The zone names are
    the ones NodeClusters place nodes in (`spec.policies.placement.zones`); naming them
    after the subnets' availability zones (`eu-west-1a: subnet-...`) keeps them readable."""
    security_group_ids: tuple[SecurityGroupId, ...] = ()
    """Security groups of every machine; empty: the subnet's VPC default group."""
    iam_instance_profile: str | None = Field(default=None, min_length=1, max_length=2048)
    """Instance profile name or ARN given to every machine."""
    key_name: str | None = Field(default=None, min_length=1, max_length=255)
    """EC2 key pair for SSH."""
    image_id: ImageRef | None = None
    """The AMI of NodeClusters whose profile names no `image`."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    """Where EC2 is reached instead of the region's public endpoint: a VPC interface
    endpoint, another partition's endpoint, a test server."""
    capacity_type: CapacityType = "on-demand"
    """`spot` launches one-time Spot instances (interrupted ones are terminated, and
    replaced as any machine gone missing); profiles may override it (`properties`)."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Tries of one EC2 request inside one call (the SDK's standard retry mode, with
    backoff), before the call fails as Retryable and the operator backs off itself."""

    @field_validator("subnets")
    @classmethod
    def _one_zone_per_subnet(cls, subnets: dict[str, str]) -> dict[str, str]:
        # The zone of a machine is read back from its subnet.
        seen: dict[str, str] = {}
        for zone, subnet in subnets.items():
            if subnet in seen:
                raise ValueError(
                    f"subnet {subnet} is given for two zones, {seen[subnet]} and {zone}"
                )
            seen[subnet] = zone
        return subnets

    @classmethod
    def from_config(cls, config: ProviderConfig) -> AwsSettings:
        """Parse `spec.config`; InvalidConfig names every problem."""
        try:
            return cls.model_validate(dict(config.config))
        except ValidationError as err:
            problems = "; ".join(_explain(error) for error in err.errors())
            raise InvalidConfig(f"aws driver config: {problems}") from None


def _explain(error: ErrorDetails) -> str:
    path = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(sorted(f.alias or n for n, f in AwsSettings.model_fields.items()))
        if "." in path:
            return f"config.{path}: unknown key"
        return f"config.{path}: unknown key (known: {known})"
    if error["type"] == "missing":
        return f"config.{path}: required"
    return f"config.{path}: {error['msg']}"


@dataclass(frozen=True)
class StaticCredentials:
    """An access key from the credentials Secret; no field shows in a repr."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def static_credentials(secret: Mapping[str, str]) -> StaticCredentials | None:
    """The access key in the NodeProvider's Secret, or None (no Secret): the SDK's
    default chain then finds credentials (IRSA, Pod Identity, instance profile)."""
    if not secret:
        return None
    unknown = sorted(set(secret) - set(CREDENTIAL_KEYS))
    if unknown:
        raise InvalidConfig(
            f"the credentials Secret has keys the aws driver does not read: {unknown}; "
            f"it reads {list(CREDENTIAL_KEYS)}"
        )
    missing = [key for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if not secret.get(key)]
    if missing:
        raise InvalidConfig(f"the credentials Secret lacks the keys {missing}")
    return StaticCredentials(
        access_key_id=secret[ACCESS_KEY_ID],
        secret_access_key=secret[SECRET_ACCESS_KEY],
        session_token=secret.get(SESSION_TOKEN) or None,
    )


PROPERTIES = frozenset({"capacityType"})
"""The profile properties (`spec.profile.properties`) the driver reads."""


def capacity_type_of(properties: Mapping[str, str], default: CapacityType) -> CapacityType:
    """The capacity type of one machine: its profile's `capacityType`, else the provider's.
    Unknown properties are refused, for the reason unknown config keys are."""
    unknown = sorted(set(properties) - PROPERTIES)
    if unknown:
        raise InvalidConfig(
            f"profile.properties {unknown} mean nothing to the aws driver; "
            f"it reads {sorted(PROPERTIES)}"
        )
    value: Any = properties.get("capacityType", default)
    if value not in ("on-demand", "spot"):
        raise InvalidConfig(
            f"profile.properties.capacityType must be on-demand or spot, got {value!r}"
        )
    result: CapacityType = value
    return result
