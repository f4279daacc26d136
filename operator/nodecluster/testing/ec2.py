"""EC2 for tests: moto's standalone server, a network in it, and EC2's failures on demand.

The aws driver is tested against moto (`moto[server]`, in the `dev` extra) as a separate
process, over HTTP, the way the driver talks to EC2: the SDK's signing, retries, XML
parsing and error codes all run for real. The unit tests use one server per session,
reset between tests (`POST /moto-api/reset`); the end-to-end suite can start the operator
with a NodeProvider whose `endpointUrl` is the same server and audit the instances.

moto does not fail the way EC2 does: it has no capacity, no account limits, no throttling.
`FaultyEc2` is an HTTP proxy in front of it that answers as EC2 would, with EC2's own
status codes and error bodies, when a test needs those (`Faults`): a full zone
(InsufficientInstanceCapacity), an instance or vCPU limit (InstanceLimitExceeded,
VcpuLimitExceeded), or changes that fail, half of them after they took effect (the answer
lost on the way back: what idempotent create exists for).

The fixtures `moto_server` (one server per session) and `ec2` (emptied, with a fresh
network, per test) are defined here, for a suite's conftest to import:

    from nodecluster.testing.ec2 import ec2, moto_server  # noqa: F401  (fixtures)

If the server cannot start, every test that needs it fails with the server's log: a driver
whose tests quietly did not run would look tested.

It needs the `aws` extra and moto; nothing of the operator imports it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import aiohttp
import pytest
from aiohttp import web

from nodecluster.providers.aws.driver import sdk_session

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ec2.type_defs import InstanceTypeDef

REGION = "us-east-1"
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
"""moto accepts any key; these are what the tests put in a credentials Secret."""
LIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
MOTO_SERVER = (sys.executable, "-m", "moto.server")
"""moto's standalone server (the `moto_server` command), run by this interpreter."""


class MotoUnavailable(RuntimeError):
    """moto's server could not be started: the tests that need it must fail, not skip."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MotoServer:
    """moto's standalone server, a child process on a free loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        """The URL to give as `endpointUrl`."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, log_dir: Path, timeout: float = 60.0, program: Sequence[str] = MOTO_SERVER
    ) -> MotoServer:
        """Start the server and wait until it answers; MotoUnavailable (with the end of
        its log) if it exits or does not answer within `timeout` seconds."""
        log_path = log_dir / "moto_server.log"
        for _ in range(3):  # a port taken between free_port() and the bind: try another
            port = free_port()
            log: IO[bytes]
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [*program, "-H", "127.0.0.1", "-p", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            server = cls(process, port, log_path)
            if server._wait_ready(timeout):
                return server
            server.stop()
            if "Address already in use" not in server.log_tail():
                break
        raise MotoUnavailable(
            f"moto's server did not start ({' '.join(program)}; is moto[server] installed? "
            f"pip install -e '.[dev]'):\n{server.log_tail()}"
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                self.reset()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def reset(self) -> None:
        """Forget every resource (moto's reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """Stop the server (and kill it if it does not stop)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ec2_client(endpoint: str, region: str = REGION) -> ClientCreatorContext[EC2Client]:
    """An EC2 client of `endpoint` with the test credentials (use with `async with`)."""
    return sdk_session().create_client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@dataclass(frozen=True)
class Ec2Network:
    """A VPC made for one test: a subnet per zone, a security group, an AMI."""

    endpoint: str
    region: str
    vpc_id: str
    subnets: Mapping[str, str]
    """Zone name -> subnet id, as the driver's `config.subnets`."""
    availability_zones: Mapping[str, str]
    """Zone name -> the availability zone its subnet is in."""
    security_group_id: str
    image_id: str

    def driver_config(self, endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
        """A NodeProvider `config` for the aws driver in this network."""
        return {
            "region": self.region,
            "endpointUrl": endpoint or self.endpoint,
            "subnets": dict(self.subnets),
            "securityGroupIds": [self.security_group_id],
            "imageId": self.image_id,
            **extra,
        }


async def make_network(
    endpoint: str,
    zones: Sequence[str] = ("zone-a", "zone-b"),
    region: str = REGION,
    image_id: str | None = None,
) -> Ec2Network:
    """Create a VPC with one subnet per zone (each in its own availability zone).
    `image_id`: an AMI moto has (default: the first of Amazon's, found in about a second:
    a session passes the one found before)."""
    async with ec2_client(endpoint, region) as client:
        vpc = (await client.create_vpc(CidrBlock="10.0.0.0/16"))["Vpc"]["VpcId"]
        offered = await client.describe_availability_zones()
        azs = [z["ZoneName"] for z in offered["AvailabilityZones"] if "ZoneName" in z]
        subnets: dict[str, str] = {}
        placed: dict[str, str] = {}
        for index, zone in enumerate(zones):
            az = azs[index % len(azs)]
            subnet = await client.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{index}.0/24", AvailabilityZone=az
            )
            subnets[zone] = subnet["Subnet"]["SubnetId"]
            placed[zone] = az
        group = await client.create_security_group(
            GroupName="nodes", Description="nodecluster test nodes", VpcId=vpc
        )
        if image_id is None:
            images = (await client.describe_images(Owners=["amazon"]))["Images"]
            image_id = next(i["ImageId"] for i in images if i.get("ImageId", "").startswith("ami-"))
    return Ec2Network(endpoint, region, vpc, subnets, placed, group["GroupId"], image_id)


async def live_instances(client: EC2Client) -> list[InstanceTypeDef]:
    """Every instance not terminated, of every tag: the audit's view of the account."""
    found: list[InstanceTypeDef] = []
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    )
    async for page in pages:
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


@dataclass(frozen=True)
class Faults:
    """How EC2 should fail (all off by default)."""

    capacity: int | None = None
    """Live instances the region has room for: RunInstances past them is refused with
    InsufficientInstanceCapacity (HTTP 500, as EC2 answers it)."""
    max_instances: int | None = None
    """The account's instance limit: InstanceLimitExceeded past it."""
    max_vcpus: int | None = None
    """The account's vCPU limit: VcpuLimitExceeded past it."""
    vcpus_per_instance: int = 2
    """vCPUs each instance counts for against `max_vcpus`."""
    failing: bool = False
    """Every change (run, terminate, start, stop, reboot) fails: the first with
    RequestLimitExceeded before reaching moto, the next with InternalError after moto
    carried it out, and so on by turns. Reads pass."""


CHANGES = frozenset(
    {"RunInstances", "TerminateInstances", "StartInstances", "StopInstances", "RebootInstances"}
)


@dataclass
class FaultyEc2:
    """An HTTP proxy in front of moto's EC2 that fails as told.

    Each `endpoint(faults)` is a URL of its own (a path prefix the proxy strips), so
    drivers with different faults share one proxy, and one moto behind it."""

    upstream: str
    calls: list[str] = field(default_factory=list)
    """Every action asked of it, in order, with what it did: `RunInstances:refused`."""
    _faults: dict[str, Faults] = field(default_factory=dict, init=False)
    _changes: dict[str, int] = field(default_factory=dict, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)
    _http: aiohttp.ClientSession | None = field(default=None, init=False)
    _counter: AsyncExitStack = field(default_factory=AsyncExitStack, init=False)
    _ec2: EC2Client | None = field(default=None, init=False)
    _url: str = field(default="", init=False)

    async def start(self) -> FaultyEc2:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_route("*", "/{key}/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._http = aiohttp.ClientSession()
        self._ec2 = await self._counter.enter_async_context(ec2_client(self.upstream))
        self._url = f"http://{host}:{port}"
        return self

    def endpoint(self, faults: Faults) -> str:
        """The `endpointUrl` of an EC2 that fails as `faults` says."""
        key = f"f{len(self._faults)}"
        self._faults[key] = faults
        self._changes[key] = 0
        return f"{self._url}/{key}/"

    async def close(self) -> None:
        """Stop listening."""
        if self._http is not None:
            await self._http.close()
        await self._counter.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        faults = self._faults.get(key)
        if faults is None:
            return web.Response(status=404, text=f"no endpoint {key}")
        body = await request.read()
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        action = (form.get("Action") or [""])[0]
        path = "/" + request.match_info["tail"]
        refusal = await self._refusal(faults, action)
        if refusal is not None:
            self.calls.append(f"{action}:refused")
            return refusal
        if faults.failing and action in CHANGES:
            self._changes[key] += 1
            if self._changes[key] % 2:
                self.calls.append(f"{action}:failed-before")
                return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
            await self._forward(request, path, body)
            self.calls.append(f"{action}:failed-after")
            return ec2_error(500, "InternalError", "An internal error has occurred.")
        self.calls.append(action)
        return await self._forward(request, path, body)

    async def _refusal(self, faults: Faults, action: str) -> web.Response | None:
        if action != "RunInstances" or (
            faults.capacity is None and faults.max_instances is None and faults.max_vcpus is None
        ):
            return None
        assert self._ec2 is not None, "start() first"
        live = len(await live_instances(self._ec2))
        if faults.capacity is not None and live + 1 > faults.capacity:
            return ec2_error(
                500,
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient capacity in the Availability Zone you "
                "requested.",
            )
        if faults.max_instances is not None and live + 1 > faults.max_instances:
            return ec2_error(
                400,
                "InstanceLimitExceeded",
                f"You have requested more instances ({live + 1}) than your current instance "
                f"limit of {faults.max_instances} allows.",
            )
        vcpus = faults.vcpus_per_instance
        if faults.max_vcpus is not None and (live + 1) * vcpus > faults.max_vcpus:
            return ec2_error(
                400,
                "VcpuLimitExceeded",
                f"You have requested more vCPU capacity than your current vCPU limit of "
                f"{faults.max_vcpus} allows.",
            )
        return None

    async def _forward(self, request: web.Request, path: str, body: bytes) -> web.Response:
        assert self._http is not None, "start() first"
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        query = f"?{request.query_string}" if request.query_string else ""
        async with self._http.request(
            request.method, f"{self.upstream}{path}{query}", data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            return web.Response(
                status=answer.status, body=payload, content_type=answer.content_type
            )


def ec2_error(status: int, code: str, message: str) -> web.Response:
    """An error as EC2's query API answers one."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return web.Response(status=status, text=body, content_type="text/xml")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server, for the whole session; MotoUnavailable (an error, not a skip) if it
    cannot start."""
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


_images: dict[str, str] = {}
"""The AMI each server's first network found (moto's images never change, and finding one
takes a second)."""


@pytest.fixture
async def ec2(moto_server: MotoServer) -> Ec2Network:
    """An emptied EC2 (moto's reset) with a fresh VPC: subnets for zone-a, zone-b, zone-c."""
    await asyncio.to_thread(moto_server.reset)
    network = await make_network(
        moto_server.endpoint,
        zones=("zone-a", "zone-b", "zone-c"),
        image_id=_images.get(moto_server.endpoint),
    )
    _images[moto_server.endpoint] = network.image_id
    return network


__all__ = [
    "REGION",
    "TEST_CREDENTIALS",
    "Ec2Network",
    "Faults",
    "FaultyEc2",
    "MotoServer",
    "MotoUnavailable",
    "ec2",
    "ec2_error",
    "free_port",
    "live_instances",
    "make_network",
    "moto_server",
]
