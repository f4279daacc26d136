"""Every object and field of every CRD tells a person reading `kubectl explain` what it
decides: a description, more than one word, not a restatement of the field's name, with its
default and (for durations, sizes and money) its unit.

The checker walks the generated schemas (what the API server serves), not the models, so it
sees exactly what `kubectl explain` prints: a model's `explain` text followed by its field's
description (api/crds.py). Its rules are tested on examples below, so that a rule that stops
catching anything fails too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from nodecluster.api.common import CamelModel
from nodecluster.api.crds import KINDS, all_crds

CRDS = {doc["spec"]["names"]["singular"]: doc for doc in all_crds()}


def schema_of(singular: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[singular]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@dataclass(frozen=True)
class Node:
    """One schema node: `path` as `kubectl explain` takes it (`nodecluster.spec.policies`);
    list items and map values, which it cannot name, end in `[]` and `{}`."""

    path: str
    names: tuple[str, ...]
    """The field names from the kind down to this node (empty for items and values)."""
    schema: dict[str, Any]

    @property
    def is_field(self) -> bool:
        return not self.path.endswith(("[]", "{}")) and bool(self.names)


def walk(schema: dict[str, Any], path: str, names: tuple[str, ...] = ()) -> Iterator[Node]:
    yield Node(path, names, schema)
    for name, prop in schema.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}", (*names, name))
    items = schema.get("items")
    if isinstance(items, dict):
        # kubectl explain goes through a list to its items' fields: `zones.name`.
        yield Node(f"{path}[]", (), items)
        for name, prop in items.get("properties", {}).items():
            yield from walk(prop, f"{path}.{name}", (*names, name))
    values = schema.get("additionalProperties")
    if isinstance(values, dict):
        yield from walk(values, f"{path}{{}}", ())


# --- the checker -------------------------------------------------------------------------


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS = _wordset(
    """a an the of for to in on at by with and or nor but its it this that these those their
    them they is are be been was were as from per each any all one own if when s which what
    who whose here there so than then into onto up out"""
)
"""Words that say nothing about what a field is."""

FILLER_WORDS = _wordset(
    "policy setting value field object list entry item parameter option configuration"
)
"""Nouns that add nothing to a field's name: "Deletion policy." says only `deletion`."""


def _stem(word: str) -> str:
    """Plural to singular, roughly but the same way on both sides of a comparison."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lowercase, singular words of `text`, camelCase split (`maxNodes`: max, node)."""
    singular = re.sub(r"\b([A-Z]{2,})s\b|([a-z0-9])([A-Z]{2,})s\b", r"\2\1\3", text)
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", singular)
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", spaced.lower())]


def is_tautological(description: str, names: tuple[str, ...]) -> bool:
    """Whether `description` only restates the field's name (and its parents' names): every
    word it has beyond stop and filler words is one of theirs."""
    own = set(words(" ".join(names)))
    said = {w for w in words(description) if w not in STOP_WORDS and w not in FILLER_WORDS}
    return said <= own


DURATION = _wordset("second minute hour day timeout interval period cooldown lifetime")
SIZE = _wordset("mib gib kib byte memory disk size")
MONEY = _wordset("cost price")


def unit_problem(description: str, names: tuple[str, ...], schema: dict[str, Any]) -> str | None:
    """What unit a numeric field's description fails to give, judged by its name."""
    if schema.get("type") not in ("integer", "number") or not names:
        return None
    name = set(words(names[-1]))
    text = description.lower()
    if name & DURATION and not re.search(r"\b(seconds?|minutes?|hours?|days?)\b", text):
        return "a duration without its unit (seconds, minutes, hours)"
    if name & SIZE and not re.search(r"\b(mib|gib|kib|bytes?)\b", text):
        return "a size without its unit (MiB, GiB, bytes)"
    if name & MONEY and "currency" not in text:
        return "an amount of money without its unit (the currency of the buckets' hourlyCost)"
    if "hourly" in name and not re.search(r"\b(per|an|one) hour\b", text):
        return "a rate without its period (per hour)"
    return None


def default_mentions(default: Any) -> str:
    """How a description says `default`: the word for it, which must appear as a word."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if default in ("", [], {}):
        return "empty"
    return str(default)


def default_problem(description: str, default: Any) -> str | None:
    """Unless the description says "default" and the default's value, what is missing."""
    value = default_mentions(default)
    said = re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-]|\.\d)", description, re.IGNORECASE)
    if "default" in description.lower() and said:
        return None
    return f"does not say its default ({value!r}, with the word 'default')"


EXCEPTIONS: dict[tuple[str, str], str] = {
    # (path pattern, rule) -> why it does not apply there. `*` is any kind.
    ("*.metadata", "missing"): "the API server refuses anything but `type` in a CRD's "
    "metadata schema, so kubectl explain shows ObjectMeta's own documentation there",
    ("nodecluster.spec.warmPool.size", "unit"): "a count of nodes (the description says "
    "so), not bytes: an Auto Scaling group's warm pool size, by the name its users know",
}


def excepted(path: str, rule: str) -> bool:
    return any(
        rule == r and re.fullmatch(re.escape(p).replace(r"\*", r"[a-z]+"), path)
        for p, r in EXCEPTIONS
    )


def problems_of(node: Node) -> list[tuple[str, str]]:
    """(rule, message) for everything wrong with one node's description."""
    description = node.schema.get("description")
    if not description or not description.strip():
        # Items and values of plain types are explained by their field; objects are not.
        if node.is_field or "properties" in node.schema:
            return [("missing", "has no description")]
        return []
    found: list[tuple[str, str]] = []
    if len(description.split()) < 2:
        found.append(("one-word", f"has a one-word description: {description!r}"))
    elif node.is_field and is_tautological(description, node.names):
        found.append(("tautological", f"only restates its name: {description!r}"))
    if "default" in node.schema:
        problem = default_problem(description, node.schema["default"])
        if problem:
            found.append(("default", problem))
    unit = unit_problem(description, node.names, node.schema)
    if unit:
        found.append(("unit", f"is {unit}: {description!r}"))
    return found


def problems(singular: str) -> list[str]:
    """Every problem of one CRD, each as `path: problem`."""
    return [
        f"{node.path}: {message}"
        for node in walk(schema_of(singular), singular)
        for rule, message in problems_of(node)
        if not excepted(node.path, rule)
    ]


# --- the CRDs ----------------------------------------------------------------------------


@pytest.mark.parametrize("singular", sorted(CRDS))
def test_every_description_says_what_the_field_decides(singular: str) -> None:
    found = problems(singular)
    assert not found, "descriptions `kubectl explain` would print badly:\n" + "\n".join(found)


def test_the_walk_reaches_items_values_and_every_kind() -> None:
    paths = {node.path for singular in CRDS for node in walk(schema_of(singular), singular)}
    assert {
        "nodecluster.spec.policies.deletion",
        "nodecluster.spec.policies.placement.zones[]",
        "nodecluster.spec.policies.placement.zones.name",
        "nodeprovider.status.installations{}",
        "nodeprovider.status.installations{}.users.first.name",
        "clusternode.status.conditions.reason",
        "nodeclusteroperation.spec.nodes.selector.matchLabels",
    } <= paths
    assert sorted(CRDS) == sorted(info.singular for info in KINDS)


def test_an_object_field_says_what_its_model_decides_then_how_it_is_used() -> None:
    policies = schema_of("nodecluster")["properties"]["spec"]["properties"]["policies"]
    deletion = policies["properties"]["deletion"]["description"]
    assert deletion.startswith("Which nodes go first")
    provider_ref = schema_of("clusternode")["properties"]["spec"]["properties"]["providerRef"]
    # The model's text, then the field's own note about this use of it.
    assert provider_ref["description"].startswith("The NodeProvider")
    assert provider_ref["description"].endswith("Immutable.")


def reachable_models() -> Iterator[type[BaseModel]]:
    """Every model whose schema is part of a CRD."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [m for info in KINDS for m in (info.spec, info.status)]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        yield model
        for field in model.model_fields.values():
            todo += [t for t in _types_in(field.annotation) if t not in seen]


def _types_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _types_in(arg)


def test_every_model_in_a_crd_explains_itself_not_through_its_docstring() -> None:
    models = list(reachable_models())
    assert len(models) > 20
    missing = [m.__name__ for m in models if not m.__dict__.get("explain")]
    assert missing == [], (
        "give each an `explain` class attribute (what an object of it decides, for "
        f"kubectl explain; api/crds.py): {missing}"
    )
    for model in models:
        # The developer's docstring is never what the schema says.
        assert issubclass(model, CamelModel), model
        described = model.model_json_schema(by_alias=True).get("description")
        assert described == model.explain, model.__name__


def test_every_exception_is_still_needed() -> None:
    used = {
        (pattern, rule)
        for singular in CRDS
        for node in walk(schema_of(singular), singular)
        for rule, _ in problems_of(node)
        for pattern, r in EXCEPTIONS
        if r == rule and excepted(node.path, rule)
    }
    assert used == set(EXCEPTIONS)


# --- the checker, on examples ------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "names"),
    [
        ("Deletion policy.", ("spec", "policies", "deletion")),
        ("The name.", ("spec", "name")),
        ("Zone name.", ("spec", "policies", "placement", "zones", "name")),
        ("Machine type.", ("status", "machineType")),
        ("Their cores.", ("status", "usage", "cores")),
        ("Its namespace.", ("status", "users", "first", "namespace")),
        ("Name of the Secret.", ("spec", "credentialsSecretRef", "name")),
        ("Lifecycle hooks.", ("spec", "policies", "lifecycleHooks")),
        ("The max nodes value.", ("spec", "maxNodes")),
        ("Addresses.", ("status", "addresses")),
    ],
)
def test_a_restated_name_is_tautological(description: str, names: tuple[str, ...]) -> None:
    assert is_tautological(description, names)


@pytest.mark.parametrize(
    ("description", "names"),
    [
        ("Which nodes go first when the cluster shrinks.", ("spec", "policies", "deletion")),
        ("Name of a zone the provider offers, e.g. zone-a.", ("spec", "zones", "name")),
        ("Nodes per zone.", ("status", "zones")),
        ("Launch or Terminate.", ("spec", "transition")),
        ("The owning NodeCluster.", ("spec", "clusterName")),
        ("Seconds after an adjustment before the next one.", ("spec", "cooldownSeconds")),
    ],
)
def test_a_description_that_adds_something_is_not(description: str, names: tuple[str, ...]) -> None:
    assert not is_tautological(description, names)


def test_words_split_camel_case_and_plurals_alike() -> None:
    assert words("maxNodeLifetimeSeconds") == ["max", "node", "lifetime", "second"]
    assert words("Policies, addresses, classes, IDs") == ["policy", "address", "class", "id"]
    assert words("providerIDs") == words("provider IDs")


@pytest.mark.parametrize(
    ("description", "default", "ok"),
    [
        ("Seconds between polls. Default 60.", 60, True),
        ("Seconds between polls (default: 60).", 60, True),
        ("Seconds between polls.", 60, False),
        ("Seconds between polls, at least 60.", 60, False),  # a bound, not the default
        ("Seconds between polls; default 600.", 60, False),  # another number
        ("Default 1.5 nodes.", 1, False),
        ("Clamp instead of refusing. Default false.", False, True),
        ("Clamp instead of refusing. Default true.", False, False),
        ("Empty by default.", "", True),
        ("RollingUpdate (the default) or OnDelete.", "RollingUpdate", True),
        ("Hours billed (default 0).", 0.0, True),
    ],
)
def test_the_default_must_be_said(description: str, default: Any, ok: bool) -> None:
    assert (default_problem(description, default) is None) is ok


@pytest.mark.parametrize(
    ("description", "names", "schema", "ok"),
    [
        ("How long to wait.", ("timeoutSeconds",), {"type": "integer"}, False),
        ("Seconds to wait.", ("timeoutSeconds",), {"type": "integer"}, True),
        ("How often, in seconds.", ("pollIntervalSeconds",), {"type": "integer"}, True),
        ("Memory of one machine.", ("memoryMib",), {"type": "integer"}, False),
        ("Memory of one machine, in MiB.", ("memoryMib",), {"type": "integer"}, True),
        ("Price of a machine-hour.", ("hourlyCost",), {"type": "number"}, False),
        ("Price per hour, in the buckets' currency.", ("hourlyCost",), {"type": "number"}, True),
        ("Machine-hours billed.", ("machineHours",), {"type": "number"}, True),
        ("When it started.", ("startedAt",), {"type": "string"}, True),  # not a number
        ("Pods still on the Node.", ("pods",), {"type": "integer"}, True),  # a count
    ],
)
def test_a_numeric_duration_size_or_cost_gives_its_unit(
    description: str, names: tuple[str, ...], schema: dict[str, Any], ok: bool
) -> None:
    assert (unit_problem(description, names, schema) is None) is ok


def test_the_failure_names_the_crd_path_and_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {
        "type": "object",
        "description": "A kind.",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "description": "What the owner declares here.",
                "properties": {
                    "policies": {
                        "type": "object",
                        "description": "Every policy of the cluster, each with defaults.",
                        "properties": {
                            "deletion": {"type": "object", "description": "Deletion policy."},
                            "grace": {"type": "integer", "default": 0, "description": "Wait."},
                            "zones": {
                                "type": "array",
                                "description": "Where nodes go, spread by weight.",
                                "items": {"type": "object", "properties": {}},
                            },
                        },
                    },
                    "cooldownSeconds": {"type": "integer", "description": "Quiet time after."},
                    "paused": {"type": "boolean"},
                },
            },
        },
    }
    monkeypatch.setitem(
        CRDS, "nodecluster", {"spec": {"versions": [{"schema": {"openAPIV3Schema": broken}}]}}
    )
    assert problems("nodecluster") == [
        "nodecluster.spec.policies.deletion: only restates its name: 'Deletion policy.'",
        "nodecluster.spec.policies.grace: has a one-word description: 'Wait.'",
        "nodecluster.spec.policies.grace: does not say its default ('0', with the word 'default')",
        "nodecluster.spec.policies.zones[]: has no description",
        "nodecluster.spec.cooldownSeconds: is a duration without its unit (seconds, minutes, "
        "hours): 'Quiet time after.'",
        "nodecluster.spec.paused: has no description",
    ]
