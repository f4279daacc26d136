"""nodecluster-operator: keeps groups of compute nodes at the size and state their owners declare.

The package is layered so that each layer can be understood and tested alone:

- ``api``: pydantic models of every kind; the single source of the CRD schemas.
- ``planning``: pure functions from (declared, observed) to actions and status; no I/O.
- ``providers``: the narrow async driver protocol, its typed errors, the registry and
  the built-in simulator.
- ``controllers``: thin kopf wiring: read, plan, act, report.
"""

GROUP = "nodecluster.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__version__ = "0.1.0"
