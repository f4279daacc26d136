"""The `aws` driver: NodeProviders whose machines are EC2 instances.

Installed with the `aws` extra (`pip install 'nodecluster-operator[aws]'`, which the image
does). The entry point `nodecluster.providers:aws` names `make_driver` here, not the driver
class, because the registry loads every entry point at startup: importing the SDK there
would stop an operator installed without the extra from starting at all. Importing it here,
when a NodeProvider asks for `driver: aws`, turns a missing extra into that NodeProvider's
`InvalidProviderConfig`, with the command that fixes it.
"""

from __future__ import annotations

from nodecluster.providers.base import InvalidConfig, ProviderConfig, ProviderDriver


def make_driver(config: ProviderConfig) -> ProviderDriver:
    """Build the driver of one NodeProvider (the `nodecluster.providers:aws` factory)."""
    try:
        from nodecluster.providers.aws.driver import AwsDriver
    except ImportError as err:
        raise InvalidConfig(
            f"the aws driver needs the 'aws' extra ({err.name or err} is missing): "
            "pip install 'nodecluster-operator[aws]'"
        ) from None
    return AwsDriver(config)
