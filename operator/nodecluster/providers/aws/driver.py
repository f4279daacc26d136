"""The `aws` driver: machines are EC2 instances, reached through aiobotocore.

aiobotocore, because the driver protocol is async: a call awaits EC2 without holding a
thread, so a hundred nodes creating at once cost a hundred awaits, not a thread pool, and
the deadline wrapper (providers/deadline.py) cancels a call by cancelling its task. One
client per NodeProvider (the registry builds one driver per NodeProvider) shares its
connection pool between every cluster that uses it; `close` closes it.

Idempotent create, twice over. RunInstances gets a ClientToken derived from the machine
name, so EC2 itself returns the first instance when a create is retried; and before
launching, the driver looks for an instance tagged with the name, because a token only
lasts as long as EC2 remembers it, and test servers (moto) and some SDK paths ignore it.

Eventual consistency. EC2 documents that an instance may be missing from DescribeInstances
for a while after RunInstances returned it. An operator that took "not listed" for "gone"
would report the fresh machine missing, make another, and delete the one it could not see
as a stray much later (or never, if asked to delete it while it is invisible: "not found"
is done). So the driver remembers what it launched for a few minutes and, while the tags do
not show it yet, asks for it by id; if even that does not know it, it is `Provisioning`
(for get and list) and a delete is `Retryable`, never `NotFound`. The memory is the
process's: after a restart, the ClientToken and the tag lookup carry idempotency alone.

The event loop is never held for long: the SDK's service models (megabytes of JSON) are
read in a worker thread before the client is built, and instances are listed in pages of
`PAGE_SIZE`, as parsing a page happens on the loop (about a millisecond per instance).

Secrets stay out of logs: the SDK logs request bodies (the user data) and signed headers
(a session token) at DEBUG, so its loggers are held at WARNING whatever the operator's
`--debug` says (`SDK_LOGGERS`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import Loader, create_loader

from nodecluster import __version__
from nodecluster.providers.aws.errors import translate
from nodecluster.providers.aws.instances import (
    CLUSTER_REF_TAG,
    LIVE_STATES,
    MACHINE_TAG,
    MAX_TAGS,
    NAME_TAG,
    PROVIDER_TAG,
    STATES,
    client_token,
    first_launch,
    instance_id_of,
    instance_tags,
    machine_state,
    tags_of,
    to_machine,
)
from nodecluster.providers.aws.settings import (
    IMAGE_PATTERN,
    MARKETS,
    AwsSettings,
    capacity_type_of,
    static_credentials,
)
from nodecluster.providers.base import (
    InvalidConfig,
    Machine,
    MachineSelection,
    MachineSpec,
    MachineState,
    NotFound,
    ProviderConfig,
    Retryable,
)

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ec2.literals import InstanceTypeType
    from types_aiobotocore_ec2.type_defs import (
        FilterTypeDef,
        InstanceStateChangeTypeDef,
        InstanceTypeDef,
        RunInstancesRequestTypeDef,
    )

log = logging.getLogger(__name__)

Machines = list[Machine]
"""(For methods defined after the method named `list`.)"""

SDK_LOGGERS = ("botocore", "aiobotocore")
"""Held at WARNING: their DEBUG lines hold request bodies (the user data) and the signed
request's headers (a session token), and the operator's --debug turns the root logger to
DEBUG. Their INFO lines (which credential source was found) are not worth the exception."""

for _name in SDK_LOGGERS:
    _sdk_log = logging.getLogger(_name)
    if _sdk_log.level < logging.WARNING:  # NOTSET (0) included: it would follow the root
        _sdk_log.setLevel(logging.WARNING)

EC2_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, OSError)
"""What an EC2 call raises when EC2, the network or the credentials fail (TimeoutError and
ConnectionError are OSErrors): translated into the typed errors. Anything else is a bug
and is left to show as one."""

EC2_ACTIONS = frozenset(
    {
        "DescribeInstances",
        "RunInstances",
        "CreateTags",
        "TerminateInstances",
        "StopInstances",
        "StartInstances",
        "RebootInstances",
    }
)
"""Every EC2 action the driver needs permission for (CreateTags: the tags given at launch,
and those an Adopt operation writes on an instance launched without the operator).
The README's IAM policy grants exactly these; tests hold the policy, this set and the calls
the driver makes together."""

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
"""Seconds; shorter than the default call deadline (120 s), so a stuck connection fails as
itself (and is retried by the SDK) before the whole call is cut off."""
MAX_CONNECTIONS = 20
"""Connections of the one client every cluster of a NodeProvider shares."""


@dataclass(frozen=True)
class Launch:
    """An instance this driver launched, as RunInstances returned it."""

    instance: InstanceTypeDef
    cluster: str
    at: float
    """When, on the operator's monotonic clock."""

    @property
    def instance_id(self) -> str:
        """The instance's id."""
        return self.instance["InstanceId"]


@contextmanager
def calling(action: str) -> Iterator[None]:
    """Raise the typed error for whatever an EC2 call inside fails with."""
    try:
        yield
    except EC2_FAILURES as err:
        raise translate(err, action) from err


class AwsDriver:
    """The `aws` driver. Also implements PowerControl (stop, start, reboot) and Adoption
    (discover, adopt: instances launched without the operator)."""

    PAGE_SIZE = 100
    """Instances per DescribeInstances page (EC2 allows 5 to 1000)."""
    CONSISTENCY_GRACE_SECONDS = 300.0
    """How long a launched instance may stay invisible to DescribeInstances."""

    def __init__(self, config: ProviderConfig, *, client: EC2Client | None = None) -> None:
        """`client`: an EC2 client to use instead of building one (tests); the caller
        closes it."""
        self.settings = AwsSettings.from_config(config)
        self._credentials = static_credentials(config.credentials)
        self._provider = config.name
        self._cores_by_type = dict(config.cores_by_type)
        self._zone_of_subnet = {subnet: zone for zone, subnet in self.settings.subnets.items()}
        self._clock = config.clock
        self._client = client
        self._stack = AsyncExitStack()
        self._opening: asyncio.Lock | None = None
        self._closed = False
        self._launched: dict[str, Launch] = {}

    def __repr__(self) -> str:
        return f"AwsDriver(provider={self._provider!r}, region={self.settings.region!r})"

    # -- the client --------------------------------------------------------------------

    async def _ec2(self) -> EC2Client:
        if self._closed:
            raise Retryable(f"the aws driver of NodeProvider {self._provider!r} was closed")
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                self._client = await self._open()
            if self._closed:  # closed while it was being opened: close it too
                await self._stack.aclose()
                raise Retryable(f"the aws driver of NodeProvider {self._provider!r} was closed")
        return self._client

    async def _open(self) -> EC2Client:
        session = sdk_session()
        await asyncio.to_thread(_load_models, session)
        credentials = self._credentials
        config = AioConfig(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
            max_pool_connections=MAX_CONNECTIONS,
            user_agent_extra=f"nodecluster-operator/{__version__}",
        )
        with calling("connect"):
            client = await self._stack.enter_async_context(
                session.create_client(
                    "ec2",
                    region_name=self.settings.region,
                    endpoint_url=self.settings.endpoint_url,
                    aws_access_key_id=credentials.access_key_id if credentials else None,
                    aws_secret_access_key=credentials.secret_access_key if credentials else None,
                    aws_session_token=credentials.session_token if credentials else None,
                    config=config,
                )
            )
        return client

    async def close(self) -> None:
        """Close the client's connections. Later calls fail as Retryable (the registry
        has built a new driver by then)."""
        self._closed = True
        await self._stack.aclose()

    # -- lookups -----------------------------------------------------------------------

    def _filters(self, tags: Mapping[str, str]) -> list[FilterTypeDef]:
        """This NodeProvider's live instances with these tags."""
        wanted = {PROVIDER_TAG: self._provider, **tags}
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{key}", "Values": [value]} for key, value in wanted.items()
        ]
        filters.append({"Name": "instance-state-name", "Values": list(LIVE_STATES)})
        return filters

    async def _describe(self, tags: Mapping[str, str]) -> list[InstanceTypeDef]:
        client = await self._ec2()
        found: list[InstanceTypeDef] = []
        with calling("DescribeInstances"):
            pages = client.get_paginator("describe_instances").paginate(
                Filters=self._filters(tags), PaginationConfig={"PageSize": self.PAGE_SIZE}
            )
            async for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
        return found

    def _recent(self) -> dict[str, Launch]:
        """Launches still inside the grace period (older ones forgotten)."""
        now = self._clock.monotonic()
        for name, launch in list(self._launched.items()):
            if now - launch.at > self.CONSISTENCY_GRACE_SECONDS:
                del self._launched[name]
        return self._launched

    async def _by_id(self, launch: Launch) -> InstanceTypeDef | None:
        """A recent launch the tags do not show yet: as EC2 knows it by id, or as it was
        launched if EC2 does not know the id yet either; None once terminated."""
        client = await self._ec2()
        try:
            with calling("DescribeInstances"):
                response = await client.describe_instances(InstanceIds=[launch.instance_id])
        except NotFound:
            return launch.instance
        for reservation in response.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("State", {}).get("Name") in LIVE_STATES:
                    found = instance.copy()
                    if not found.get("Tags"):  # they may lag behind the instance
                        found["Tags"] = launch.instance.get("Tags", [])
                    return found
        return None

    async def _find(self, name: str) -> InstanceTypeDef | None:
        """The live instance of a machine, or None."""
        instances = await self._describe({MACHINE_TAG: name})
        if instances:
            self._launched.pop(name, None)  # visible now: the tags will keep finding it
            # One at most, unless a create raced another without a token (moto): the
            # oldest is the one a retry would have returned.
            return min(instances, key=first_launch)
        launch = self._recent().get(name)
        return None if launch is None else await self._by_id(launch)

    async def _require(self, name: str) -> InstanceTypeDef:
        instance = await self._find(name)
        if instance is None:
            raise NotFound(f"machine {name} does not exist")
        return instance

    def _machine(self, instance: InstanceTypeDef, state: MachineState | None = None) -> Machine:
        return to_machine(instance, self._zone_of_subnet, self._cores_by_type, state)

    # -- the protocol ------------------------------------------------------------------

    async def create(self, spec: MachineSpec) -> Machine:
        """Launch the machine named spec.name, or return the instance that already is it."""
        request = self._launch_request(spec)
        existing = await self._find(spec.name)
        if existing is not None:
            return self._machine(existing)
        client = await self._ec2()
        with calling("RunInstances"):
            response = await client.run_instances(**request)
        # As launched, with the tags asked for: whether EC2's answer repeats them or not,
        # the instance has them, and a machine is known by them.
        instance = response["Instances"][0].copy()
        instance["Tags"] = list(request["TagSpecifications"][0].get("Tags", []))
        state = machine_state(instance)
        if state is None or state == "Deleting":
            # EC2 answered the token with an instance of this name it had launched before
            # and that is terminated since: no other can be made under the name. Failed,
            # and gone at the next look (MachineMissing), so the node is replaced.
            return self._machine(instance, "Failed")
        self._launched[spec.name] = Launch(instance, spec.cluster, self._clock.monotonic())
        log.info(
            "Provider %s: launched %s as %s in %s",
            self._provider,
            spec.name,
            instance["InstanceId"],
            request["SubnetId"],
        )
        return self._machine(instance)

    def _launch_request(self, spec: MachineSpec) -> RunInstancesRequestTypeDef:
        """RunInstances' parameters; InvalidConfig before any call when they cannot work."""
        settings = self.settings
        subnet = self._subnet(spec)
        image = spec.image or settings.image_id
        if image is None:
            raise InvalidConfig(
                "no AMI: set the NodeCluster's spec.profile.image or the NodeProvider's "
                "config.imageId"
            )
        if not re.fullmatch(IMAGE_PATTERN, image):
            raise InvalidConfig(
                f"profile.image {image!r} is not an AMI id (ami-...) or resolve:ssm:<parameter>"
            )
        # The profile's capacityType (or a capacity fallback alternative's) first; unset,
        # properties.capacityType or the provider's config, as before it existed.
        capacity = capacity_type_of(spec.properties, settings.capacity_type)
        if spec.capacity_type is not None:
            capacity = MARKETS[spec.capacity_type]
        tags = instance_tags(spec, self._provider)
        request: RunInstancesRequestTypeDef = {
            "ImageId": image,
            "InstanceType": cast("InstanceTypeType", spec.machine_type),
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": client_token(spec.name),
            "SubnetId": subnet,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if settings.security_group_ids:
            request["SecurityGroupIds"] = list(settings.security_group_ids)
        if settings.iam_instance_profile:
            profile = settings.iam_instance_profile
            request["IamInstanceProfile"] = (
                {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
            )
        if settings.key_name:
            request["KeyName"] = settings.key_name
        if spec.user_data:
            request["UserData"] = spec.user_data  # the SDK encodes it in base64
        if capacity == "spot":
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        return request

    def _subnet(self, spec: MachineSpec) -> str:
        subnets = self.settings.subnets
        if spec.zone is None:
            # No placement asked for: a zone of the provider's, the same one every time.
            zones = sorted(subnets)
            digest = hashlib.sha256(spec.name.encode()).digest()
            return subnets[zones[int.from_bytes(digest[:4], "big") % len(zones)]]
        if spec.zone not in subnets:
            raise InvalidConfig(
                f"zone {spec.zone!r} has no subnet in the NodeProvider's config.subnets "
                f"(zones: {sorted(subnets)})"
            )
        return subnets[spec.zone]

    async def delete(self, name: str) -> None:
        """Terminate the machine's instance; NotFound once it is terminated."""
        client = await self._ec2()
        instances = await self._describe({MACHINE_TAG: name})
        if instances:
            self._launched.pop(name, None)
            running = [
                i["InstanceId"]
                for i in instances
                if i.get("State", {}).get("Name") != "shutting-down"
            ]
            if running:
                with calling("TerminateInstances"):
                    await client.terminate_instances(InstanceIds=running)
                log.info("Provider %s: terminating %s (%s)", self._provider, name, running)
            return  # shutting down: NotFound once terminated
        launch = self._recent().get(name)
        if launch is None:
            raise NotFound(f"machine {name} does not exist")
        try:
            with calling("TerminateInstances"):
                response = await client.terminate_instances(InstanceIds=[launch.instance_id])
        except NotFound as err:
            raise Retryable(
                f"machine {name} ({launch.instance_id}) was launched moments ago and EC2 "
                "does not show it yet; deleting it again shortly"
            ) from err
        changes = response.get("TerminatingInstances", [])
        if changes and changes[0].get("PreviousState", {}).get("Name") == "terminated":
            self._launched.pop(name, None)
            raise NotFound(f"machine {name} does not exist")

    async def get(self, name: str) -> Machine:
        """The machine's instance; NotFound when there is none (or it is terminated)."""
        return self._machine(await self._require(name))

    async def list(self, cluster: str | None = None) -> list[Machine]:
        """This NodeProvider's instances of one cluster (`<namespace>/<cluster>`), or all.

        Not narrowed to an installation: the protocol does not say which, and the
        operator keeps only its own installation's machines (identity.collected_by)."""
        instances = await self._describe({CLUSTER_REF_TAG: cluster} if cluster else {})
        machines = {m.name: m for m in (self._machine(i) for i in instances)}
        for name in machines:
            self._launched.pop(name, None)
        for name, launch in list(self._recent().items()):
            if cluster is not None and launch.cluster != cluster:
                continue
            instance = await self._by_id(launch)
            if instance is not None and tags_of(instance).get(PROVIDER_TAG) == self._provider:
                machines[name] = self._machine(instance)
        return [machines[name] for name in sorted(machines)]

    # -- adoption ----------------------------------------------------------------------

    async def discover(self, selection: MachineSelection) -> Machines:
        """Adoption: the region's live instances with one of the given instance ids
        (`aws:///<az>/<id>` or the bare id), or carrying every given tag, whoever launched
        them (no provider tag is required). Ids are asked for as a filter, not as
        `InstanceIds`, so an unknown id matches nothing instead of failing the call.
        `shutting-down` instances are returned (as Deleting: the operator refuses them);
        terminated ones are not."""
        filters: list[FilterTypeDef] = [
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)}
        ]
        if selection.provider_ids:
            ids = sorted({instance_id_of(p) for p in selection.provider_ids})
            filters.append({"Name": "instance-id", "Values": ids})
        else:
            filters += [
                {"Name": f"tag:{key}", "Values": [value]} for key, value in selection.tags.items()
            ]
        client = await self._ec2()
        found: list[InstanceTypeDef] = []
        with calling("DescribeInstances"):
            pages = client.get_paginator("describe_instances").paginate(
                Filters=filters, PaginationConfig={"PageSize": self.PAGE_SIZE}
            )
            async for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
        found.sort(key=lambda i: i["InstanceId"])
        return [self._machine(i) for i in found]

    async def adopt(self, machine: Machine, spec: MachineSpec) -> Machine:
        """Adoption: tag the instance as `create` would have (the machine name, this
        NodeProvider, the cluster, the identity; a `Name` only if it has none, so the
        console keeps the name its owner gave it), with one CreateTags. Remembered like a
        launch, so that `get(spec.name)` finds it by id while DescribeInstances' tag
        filters lag behind (eventual consistency)."""
        instance_id = instance_id_of(machine.provider_id)
        client = await self._ec2()
        with calling("DescribeInstances"):
            response = await client.describe_instances(
                Filters=[
                    {"Name": "instance-id", "Values": [instance_id]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ]
            )
        instances = [i for r in response.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            raise NotFound(f"machine {machine.provider_id} does not exist")
        instance = instances[0]
        current = tags_of(instance)
        wanted = {
            **spec.tags,
            MACHINE_TAG: spec.name,
            PROVIDER_TAG: self._provider,
            CLUSTER_REF_TAG: spec.cluster,
        }
        if NAME_TAG not in current:
            wanted[NAME_TAG] = spec.name
        if len({**current, **wanted}) > MAX_TAGS:
            raise InvalidConfig(
                f"instance {instance_id} has {len(current)} tags; adopting it needs "
                f"{len(set(wanted) - set(current))} more and EC2 allows {MAX_TAGS}"
            )
        if any(current.get(k) != v for k, v in wanted.items()):
            with calling("CreateTags"):
                await client.create_tags(
                    Resources=[instance_id],
                    Tags=[{"Key": k, "Value": v} for k, v in wanted.items()],
                )
            log.info("Provider %s: adopted %s as %s", self._provider, instance_id, spec.name)
        adopted = instance.copy()
        adopted["Tags"] = [{"Key": k, "Value": v} for k, v in {**current, **wanted}.items()]
        self._launched[spec.name] = Launch(adopted, spec.cluster, self._clock.monotonic())
        return self._machine(adopted)

    async def stop(self, name: str) -> Machine:
        """Stop the instance (kept, with its disks); idempotent."""
        instance = await self._require(name)
        if instance.get("State", {}).get("Name") in ("stopping", "stopped"):
            return self._machine(instance)
        client = await self._ec2()
        with calling("StopInstances"):
            response = await client.stop_instances(InstanceIds=[instance["InstanceId"]])
        return self._machine(instance, _current(response.get("StoppingInstances", [])))

    async def start(self, name: str) -> Machine:
        """Start a stopped instance; idempotent."""
        instance = await self._require(name)
        if instance.get("State", {}).get("Name") in ("pending", "running"):
            return self._machine(instance)
        client = await self._ec2()
        with calling("StartInstances"):
            response = await client.start_instances(InstanceIds=[instance["InstanceId"]])
        state = _current(response.get("StartingInstances", []))
        return self._machine(instance, "Starting" if state == "Provisioning" else state)

    async def reboot(self, name: str) -> Machine:
        """Reboot the instance. EC2 shows it `running` throughout; `Rebooting` is returned
        so the operator looks again soon."""
        instance = await self._require(name)
        client = await self._ec2()
        with calling("RebootInstances"):
            await client.reboot_instances(InstanceIds=[instance["InstanceId"]])
        return self._machine(instance, "Rebooting")


def _current(changes: Sequence[InstanceStateChangeTypeDef]) -> MachineState | None:
    """The state a Start/Stop answer reports the instance in now."""
    for change in changes:
        name = change.get("CurrentState", {}).get("Name")
        if name is not None:
            return STATES.get(name)
    return None


def sdk_session() -> AioSession:
    """A new SDK session (its own credentials chain) on the process's one model loader."""
    session = AioSession()
    session.register_component("data_loader", _service_models())
    return session


@functools.cache
def _service_models() -> Loader:
    """The SDK's loader of service models, shared by every driver in the process: the
    models are read-only data, and reading them costs ~0.2 s each time a driver is built
    (a NodeProvider changed, its credentials rotated) if every session reads its own."""
    return create_loader()


def _load_models(session: AioSession) -> None:
    """Read the SDK's EC2 models into the loader's cache (blocking file reads and JSON
    parsing, ~0.2 s: in a worker thread, so building the client then takes ~0.02 s of the
    event loop instead of all of it). Best effort: what fails here is read again later."""
    loader = session.get_component("data_loader")
    for service_type in ("service-2", "paginators-1", "endpoint-rule-set-1"):
        try:
            loader.load_service_model("ec2", service_type)
        except Exception as err:
            log.debug("warming the EC2 %s model failed: %s", service_type, err)
    for data in ("endpoints", "partitions", "_retry", "sdk-default-configuration"):
        try:
            loader.load_data(data)
        except Exception as err:
            log.debug("warming the SDK's %s data failed: %s", data, err)
