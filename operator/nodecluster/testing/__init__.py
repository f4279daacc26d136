"""Test the operator's controllers, and your provider driver, in one process.

The way `kopf.testing` serves kopf operators, this package serves this one:

- `FakeKube`: an in-memory kube-apiserver for the calls the controllers make, with
  watches, injectable faults and a journal of calls (kept honest by an end-to-end test
  that plays the same scenario against a real API server);
- `Harness`: the real controllers on a `FakeKube`, driven by its watch, on a clock the
  test moves (`LoopClock` under `looptime`);
- `ProviderContract`: the suite every provider driver must pass; subclass it with a
  `make_driver` fixture to run it against yours.

It needs the `testing` extra (pytest, pytest-asyncio).
"""

from nodecluster.clock import LoopClock
from nodecluster.testing.contract import MakeDriver, ProviderContract, Scenario
from nodecluster.testing.fakekube import FakeKube, Fault, Watch, WatchEvent
from nodecluster.testing.harness import (
    Harness,
    LocalClusterIndex,
    LocalKubeNodeIndex,
    LocalNodeIndex,
)

__all__ = [
    "FakeKube",
    "Fault",
    "Harness",
    "LocalClusterIndex",
    "LocalKubeNodeIndex",
    "LocalNodeIndex",
    "LoopClock",
    "MakeDriver",
    "ProviderContract",
    "Scenario",
    "Watch",
    "WatchEvent",
]
