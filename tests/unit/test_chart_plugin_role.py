"""The chart's optional ClusterRole for people running the kubectl plugin: off unless
asked for, and then exactly the reads of plan, describe and usage and the operations of
the verbs, never a write to a cluster, a node or a provider (tests/e2e/test_plugin.py runs
the plugin as a user bound to it)."""

from __future__ import annotations

import pytest
from test_chart import Rules, find, one, render, rules

pytestmark = pytest.mark.needs_tool("helm")  # skip or fail: tests/unit/conftest.py

ROLE = "nc-nodecluster-operator-plugin-user"
PLUGIN_RULES: Rules = {
    ("nodecluster.io", "nodeclusters", ()): {"get", "list"},
    ("nodecluster.io", "clusternodes", ()): {"get", "list"},
    ("nodecluster.io", "nodeproviders", ()): {"get", "list"},
    ("nodecluster.io", "nodeclusteroperations", ()): {"get", "list", "create"},
    ("", "events", ()): {"list"},
}


def test_no_plugin_role_unless_asked_for() -> None:
    assert find(render(), "ClusterRole", ROLE) == []
    assert (
        find(
            render("--set", "rbac.pluginRole.create=true", "--set", "rbac.create=false"),
            "ClusterRole",
            ROLE,
        )
        == []
    )


def test_the_plugin_role_reads_and_creates_operations_only_and_binds_nobody() -> None:
    docs = render("--set", "rbac.pluginRole.create=true")
    assert rules(one(docs, "ClusterRole", ROLE)) == PLUGIN_RULES
    bound = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and d["roleRef"]["name"] == ROLE
    ]
    assert bound == []  # who may use the plugin is the cluster admin's choice
