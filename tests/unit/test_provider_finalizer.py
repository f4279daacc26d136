"""The finalizer by which an installation holds a NodeProvider is valid for every valid id.

The API server refuses a finalizer that is not a qualified name (422), and an installation
whose finalizer it refuses could never hold a provider. `run --installation-id` accepts a
set of ids; each must make a finalizer that apimachinery's IsQualifiedName accepts (the
fake's copy of it, checked against kube-apiserver by the honesty test), and two ids must
never make one finalizer.
"""

from __future__ import annotations

import argparse
import string

import pytest

from nodecluster.api.nodeprovider import provider_finalizer
from nodecluster.cli import installation_id
from nodecluster.testing.fakekube import _qualified_name_errors

IDS = [
    "default",
    "a",
    "7",
    "nodecluster-system.nodecluster-operator",  # the chart's default: <namespace>.<release>
    "Prod_EU-West.2",
    "x" * 63,
    "A._-" + string.ascii_letters + "0123456",  # 63 characters, of every kind allowed
]


@pytest.mark.parametrize("value", IDS, ids=lambda v: v[:24])
def test_every_valid_installation_id_makes_a_valid_finalizer(value: str) -> None:
    assert installation_id(value) == value  # `run` takes it

    finalizer = provider_finalizer(value)

    assert _qualified_name_errors(finalizer) == []
    assert finalizer.startswith("in-use.nodecluster.io/")


def test_ids_run_refuses_need_no_finalizer() -> None:
    for bad in ("", "-a", "a-", "a/b", "x" * 64, "ü"):
        with pytest.raises(argparse.ArgumentTypeError):
            installation_id(bad)


def test_two_installations_never_share_a_finalizer() -> None:
    ids = ["blue", "Blue", "blue.1", "blue_1", "blue-1"]

    assert len({provider_finalizer(i) for i in ids}) == len(ids)
