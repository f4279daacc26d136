"""EC2's errors in the operator's vocabulary: one row per code the README's table names,
as botocore raises them (a ClientError with EC2's code and HTTP status), and the failures
that never reach EC2 (no connection, a timeout, no credentials)."""

from __future__ import annotations

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from nodecluster.providers.aws.errors import MESSAGE_LIMIT, translate
from nodecluster.providers.base import (
    CapacityExceeded,
    InvalidConfig,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Retryable,
    Unauthorized,
)


def client_error(code: str, status: int = 400, message: str = "it failed") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "RunInstances",
    )


CODES: list[tuple[str, int, type[ProviderError]]] = [
    # No room for the instance type in the zone (EC2 answers these with a 500).
    ("InsufficientInstanceCapacity", 500, CapacityExceeded),
    ("InsufficientHostCapacity", 500, CapacityExceeded),
    ("InsufficientReservedInstanceCapacity", 500, CapacityExceeded),
    ("InsufficientCapacity", 500, CapacityExceeded),
    ("InsufficientFreeAddressesInSubnet", 400, CapacityExceeded),
    ("SpotMaxPriceTooLow", 400, CapacityExceeded),
    # Account limits.
    ("InstanceLimitExceeded", 400, QuotaExceeded),
    ("VcpuLimitExceeded", 400, QuotaExceeded),
    ("MaxSpotInstanceCountExceeded", 400, QuotaExceeded),
    ("VolumeLimitExceeded", 400, QuotaExceeded),
    # Throttling and EC2's own faults.
    ("RequestLimitExceeded", 503, Retryable),
    ("Throttling", 400, Retryable),
    ("ThrottlingException", 400, Retryable),
    ("InternalError", 500, Retryable),
    ("InternalFailure", 500, Retryable),
    ("ServiceUnavailable", 503, Retryable),
    ("Unavailable", 503, Retryable),
    ("SomethingNew", 500, Retryable),
    ("SomethingNew", 502, Retryable),
    ("IncorrectInstanceState", 400, Retryable),
    ("PendingVerification", 400, Retryable),
    # Refused credentials: the Secret is read again.
    ("AuthFailure", 401, Unauthorized),
    ("ExpiredToken", 400, Unauthorized),
    ("RequestExpired", 400, Unauthorized),
    ("InvalidClientTokenId", 403, Unauthorized),
    ("SignatureDoesNotMatch", 403, Unauthorized),
    ("SomethingNew", 401, Unauthorized),
    # Denied permissions and things that do not exist or fit: a person must act.
    ("UnauthorizedOperation", 403, InvalidConfig),
    ("AccessDenied", 403, InvalidConfig),
    ("OptInRequired", 401, InvalidConfig),
    ("InvalidAMIID.NotFound", 400, InvalidConfig),
    ("InvalidAMIID.Malformed", 400, InvalidConfig),
    ("InvalidSubnetID.NotFound", 400, InvalidConfig),
    ("InvalidGroup.NotFound", 400, InvalidConfig),
    ("InvalidKeyPair.NotFound", 400, InvalidConfig),
    ("InvalidParameterValue", 400, InvalidConfig),
    ("InvalidParameterCombination", 400, InvalidConfig),
    ("Unsupported", 400, InvalidConfig),
    ("UnsupportedOperation", 400, InvalidConfig),
    ("InvalidLaunchTemplateId.NotFound", 400, InvalidConfig),
    ("NoSuchEntity", 404, InvalidConfig),
    # The instance itself is gone.
    ("InvalidInstanceID.NotFound", 400, NotFound),
    ("InvalidInstanceID.Malformed", 400, NotFound),
    # Anything else: a plain provider error (reported and retried with backoff).
    ("IdempotentParameterMismatch", 400, ProviderError),
    ("SomethingNew", 400, ProviderError),
]


def case_id(value: object) -> str:
    return value.__name__ if isinstance(value, type) else str(value)


@pytest.mark.parametrize(("code", "status", "expected"), CODES, ids=case_id)
def test_an_ec2_error_code_maps_to_its_type(
    code: str, status: int, expected: type[ProviderError]
) -> None:
    err = translate(client_error(code, status), "RunInstances")

    assert type(err) is expected
    assert str(err).startswith(f"RunInstances: {code}: it failed")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (EndpointConnectionError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"), Retryable),
        (ConnectTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"), Retryable),
        (ReadTimeoutError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"), Retryable),
        (ConnectionClosedError(endpoint_url="https://ec2.eu-west-1.amazonaws.com"), Retryable),
        (aiohttp.ServerDisconnectedError(), Retryable),
        (aiohttp.ClientConnectionError("reset by peer"), Retryable),
        (TimeoutError(), Retryable),
        (ConnectionResetError(104, "reset"), Retryable),
        (NoCredentialsError(), InvalidConfig),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), InvalidConfig),
        (CredentialRetrievalError(provider="web-identity", error_msg="denied"), Unauthorized),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_failures_before_ec2_answers_map_to_their_type(
    failure: Exception, expected: type[ProviderError]
) -> None:
    err = translate(failure, "DescribeInstances")

    assert type(err) is expected
    assert str(err).startswith("DescribeInstances: ")


def test_the_code_decides_not_the_status() -> None:
    # EC2 answers a full zone with a 500: it is capacity, not a passing server fault.
    assert isinstance(
        translate(client_error("InsufficientInstanceCapacity", 500), "x"), CapacityExceeded
    )


def test_a_long_message_is_cut_short() -> None:
    encoded = "Encoded authorization failure message: " + "A" * 5000
    err = translate(client_error("UnauthorizedOperation", 403, encoded), "RunInstances")

    assert isinstance(err, InvalidConfig)
    assert len(str(err)) <= MESSAGE_LIMIT + len("RunInstances: UnauthorizedOperation: ")


def test_a_parameter_value_the_sdk_quotes_is_left_out() -> None:
    secret = "kubeadm join --token abcdef.0123456789abcdef"
    failure = ParamValidationError(
        report=f"Invalid type for parameter UserData, value: {secret}, type: <class 'int'>"
    )

    err = translate(failure, "RunInstances")

    assert isinstance(err, InvalidConfig)
    assert "UserData" in str(err)
    assert "abcdef" not in str(err)


def test_every_typed_error_keeps_its_cause_for_the_traceback() -> None:
    cause = client_error("VcpuLimitExceeded")
    try:
        try:
            raise cause
        except ClientError as err:
            raise translate(err, "RunInstances") from err
    except QuotaExceeded as typed:
        assert typed.__cause__ is cause
