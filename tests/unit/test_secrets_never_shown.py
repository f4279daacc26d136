"""Secret values handed to a driver never show: not in a repr, not in a log, not on disk.

A machine's user data usually carries a boot token (kubeadm join, a cloud-init secret).
Drivers log the specs they are asked to create, and tracebacks print the arguments of
the frame that failed; either would put the token in the operator's logs if the spec
showed it. The same goes for a NodeProvider's credentials.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nodecluster.providers.base import MachineSpec, ProviderConfig
from nodecluster.providers.simulator import SimulatorDriver

TOKEN = "abcdef.0123456789abcdef"
USER_DATA = f"#cloud-config\nruncmd: [kubeadm join --token {TOKEN}]\n"


def spec_with_user_data() -> MachineSpec:
    return MachineSpec(
        name="web-x1", cluster="team-a/web", machine_type="small", user_data=USER_DATA
    )


def files_under(folder: Path) -> bytes:
    """Every byte of the files in folder (the inventory, its journal)."""
    return b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())


def test_a_machine_specs_repr_and_str_leave_its_user_data_out() -> None:
    spec = spec_with_user_data()

    assert TOKEN not in repr(spec)
    assert TOKEN not in str(spec)
    assert TOKEN not in f"{spec!r} {spec}"
    assert "web-x1" in repr(spec)  # the rest still shows, for the logs that need it


def test_a_machine_spec_still_carries_its_user_data_and_compares_by_it() -> None:
    spec = spec_with_user_data()

    assert spec.user_data == USER_DATA
    assert spec != MachineSpec(name="web-x1", cluster="team-a/web", machine_type="small")


def test_a_provider_configs_repr_leaves_its_credentials_out() -> None:
    config = ProviderConfig(name="sim", config={}, credentials={"token": TOKEN})

    assert TOKEN not in repr(config)


async def test_the_simulator_neither_logs_nor_stores_the_user_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = SimulatorDriver(ProviderConfig(name="sim", config={"path": str(tmp_path / "m.db")}))
    try:
        await driver.create(spec_with_user_data())
        await driver.get("web-x1")
        await driver.list()
    finally:
        await driver.close()

    assert TOKEN not in caplog.text
    stored = files_under(tmp_path)
    assert stored  # the inventory was written: the check below looked at something
    assert TOKEN.encode() not in stored
