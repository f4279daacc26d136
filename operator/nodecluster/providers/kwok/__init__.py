"""The `kwok` driver: NodeProviders whose machines are fake Kubernetes Nodes made Ready by
kwok (driver.py). Its dependencies are the operator's own (kubernetes_asyncio, pydantic), so
it needs no extra; the entry point `nodecluster.providers:kwok` names `KwokDriver`.

`STAGES` is the kwok configuration the driver relies on: the stages that make its Nodes
Ready, NotReady when powered off, and reboot them (run kwok with `--config` of it, or apply
it as Stage objects to a kwok started with `--enable-crds=Stage`).
"""

from __future__ import annotations

from pathlib import Path

from nodecluster.providers.kwok.driver import KwokDriver

STAGES = Path(__file__).resolve().parent / "stages.yaml"
"""kwok's stages for this driver's Nodes (and the pods bound to them)."""

__all__ = ["STAGES", "KwokDriver"]
