"""EC2's errors in the operator's vocabulary (providers/base.py).

The controllers choose between retrying and reporting from the type of an error, so this
table is the whole of the driver's judgement about failures; the README shows it. It is
decided from EC2's error *code*, never from a message, and the code wins over the HTTP
status: EC2 answers `InsufficientInstanceCapacity` with a 500, and it is a capacity
problem (reported as `CapacityExceeded`), not a server fault.

- `Unauthorized` is an authentication failure: a key revoked, a session token expired,
  a signature made with a secret that was rotated. The operator reads the Secret again
  and retries, so a rotation heals by itself.
- A denied *permission* (`UnauthorizedOperation`) is `InvalidConfig`: the credentials
  work, the IAM policy lacks an action; retrying cannot help until a person changes it.
- Codes not in the table: 5xx are `Retryable`, anything else a plain `ProviderError`
  (reported with its code and message, retried with backoff, never mistaken for a config
  error that stalls the cluster).

Messages carry the action, the code and EC2's message (cut short: an encoded
authorization failure runs to kilobytes), never request parameters: a request holds the
user data, and the SDK's own validation errors can quote a parameter's value.
"""

from __future__ import annotations

import re

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Retryable,
    Unauthorized,
)

CAPACITY = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientFreeAddressesInSubnet",
        "SpotMaxPriceTooLow",
    }
)
"""No room for this instance type in this zone (or at this Spot price) right now."""

QUOTA = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "VolumeLimitExceeded",
        "NetworkInterfaceLimitExceeded",
        "ResourceLimitExceeded",
    }
)
"""An account limit (a Service Quota) forbids more."""

RETRYABLE = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "PendingVerification",
        "IncorrectInstanceState",
        "IncorrectState",
    }
)
"""Throttling, EC2's own faults, and states that pass (start of an instance still
stopping; a new account still being verified)."""

UNAUTHORIZED = frozenset(
    {
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "UnrecognizedClientException",
    }
)
"""The credentials were refused (expired, revoked, wrong): the Secret is read again."""

INVALID_CONFIG = frozenset(
    {
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "OptInRequired",
        "Blocked",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.Unavailable",
        "InvalidSubnetID.NotFound",
        "InvalidSubnetID.Malformed",
        "InvalidSubnet",
        "InvalidGroup.NotFound",
        "InvalidGroupId.Malformed",
        "InvalidSecurityGroupID.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidInstanceType",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "MissingParameter",
        "UnknownParameter",
        "InvalidUserData.Malformed",
        "InvalidBlockDeviceMapping",
        "InvalidPlacementGroup.Unknown",
        "Unsupported",
        "UnsupportedOperation",
        "TagLimitExceeded",
        "InvalidTagKey.Malformed",
        "NoSuchEntity",
    }
)
"""A permission the IAM policy lacks, or an AMI, subnet, security group, key pair,
instance type or profile that does not exist or does not fit: a person must act."""

NOT_FOUND = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
"""The instance does not exist (asked for by id)."""

MESSAGE_LIMIT = 300
"""Characters of EC2's message kept: enough for every message but the encoded
authorization failure that follows UnauthorizedOperation's first sentence."""

_QUOTED_VALUE = re.compile(r"value: .*?, type:", re.DOTALL)


def error_code(err: ClientError) -> str:
    """EC2's error code ('' when the response had none)."""
    return str(err.response.get("Error", {}).get("Code") or "")


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def translate(err: Exception, action: str) -> ProviderError:
    """The typed error for an exception raised by an EC2 call named `action`."""
    if isinstance(err, ClientError):
        return _client_error(err, action)
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return InvalidConfig(
            f"{action}: no AWS credentials: name a Secret in credentialsSecretRef, or give "
            "the operator's pod a role (IRSA, EKS Pod Identity, an instance profile)"
        )
    if isinstance(err, CredentialRetrievalError):
        return Unauthorized(f"{action}: fetching AWS credentials failed: {_short(str(err))}")
    if isinstance(err, ParamValidationError):
        # The SDK may quote a parameter's value ("value: ..., type: ..."): drop it.
        message = _QUOTED_VALUE.sub("type:", str(err))
        return InvalidConfig(f"{action}: {_short(message)}")
    if isinstance(
        err,
        BotoConnectionError
        | HTTPClientError
        | ConnectionClosedError
        | aiohttp.ClientError
        | TimeoutError
        | ConnectionError,
    ):
        return Retryable(f"{action}: EC2 did not answer: {_short(str(err)) or type(err).__name__}")
    if isinstance(err, BotoCoreError):
        return ProviderError(f"{action}: {_short(str(err))}")
    return ProviderError(f"{action}: {type(err).__name__}: {_short(str(err))}")


def _client_error(err: ClientError, action: str) -> ProviderError:
    code = error_code(err)
    message = _short(str(err.response.get("Error", {}).get("Message") or ""))
    text = f"{action}: {code}: {message}" if message else f"{action}: {code}"
    if code == "IdempotentParameterMismatch":
        # The machine name (the ClientToken) launched an instance before, with other
        # settings, and EC2 will not launch another under it.
        return ProviderError(f"{text} (an instance was launched under this name before)")
    if code in CAPACITY:
        return CapacityExceeded(text)
    if code in QUOTA:
        return QuotaExceeded(text)
    if code in UNAUTHORIZED:
        return Unauthorized(text)
    if code in NOT_FOUND:
        return NotFound(text)
    if code in INVALID_CONFIG:
        return InvalidConfig(text)
    if code in RETRYABLE or _status(err) >= 500:
        return Retryable(text)
    if code.endswith((".NotFound", ".Malformed")):
        # A resource the config or profile names does not exist (e.g. a launch template,
        # a placement group): the instance's own id is handled above.
        return InvalidConfig(text)
    if _status(err) == 401:
        return Unauthorized(text)
    return ProviderError(text)
