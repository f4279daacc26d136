"""`kubectl-nodecluster`: the kubectl plugin (`kubectl nodecluster ...`).

Installed with the package as a console script, so `kubectl nodecluster` works wherever
the package's bin directory is on PATH (kubectl finds any `kubectl-*` executable there,
as krew installs them). It acts with the user's own credentials (their kubeconfig, through
the same async client as the operator and `nodecluster-operator usage`), never the
operator's: what it may read and create is what RBAC grants that user (the chart's
optional `pluginRole`). It never loads kopf.

- `plan`: the preview of a changed NodeCluster (cli_plan.py);
- `describe NAME`: a cluster as a tree of zones and nodes, its conditions and Events;
- `usage`: machine-hours and cost (usagereport.py);
- `scale-out`, `scale-in`, `remove`, `check`, `recover`: create a NodeClusterOperation and
  wait for it with a progress line (operations.py).
"""

from __future__ import annotations
