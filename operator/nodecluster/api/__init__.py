"""The API: pydantic models of every kind, and the CRDs generated from them."""

from nodecluster.api.clusternode import ClusterNode, ClusterNodeSpec, ClusterNodeStatus
from nodecluster.api.common import Condition, ObjectMeta
from nodecluster.api.nodecluster import NodeCluster, NodeClusterSpec, NodeClusterStatus
from nodecluster.api.nodeprovider import NodeProvider, NodeProviderSpec, NodeProviderStatus
from nodecluster.api.operation import (
    NodeClusterOperation,
    NodeClusterOperationSpec,
    NodeClusterOperationStatus,
)

__all__ = [
    "ClusterNode",
    "ClusterNodeSpec",
    "ClusterNodeStatus",
    "Condition",
    "NodeCluster",
    "NodeClusterOperation",
    "NodeClusterOperationSpec",
    "NodeClusterOperationStatus",
    "NodeClusterSpec",
    "NodeClusterStatus",
    "NodeProvider",
    "NodeProviderSpec",
    "NodeProviderStatus",
    "ObjectMeta",
]
