"""Building blocks shared by every kind.

Models use camelCase on the wire (as Kubernetes does) and snake_case in Python. Every
field carries a description, and every model an `explain` text, because the CRD generator
turns them into `kubectl explain` text (api/crds.py says how they combine): a field without
one is a field users must guess about. Docstrings are for developers and never reach it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from nodecluster import GROUP

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label: what Kubernetes accepts as a name of most things."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ABANDON_MACHINES_ANNOTATION = f"{GROUP}/abandon-machines"
"""Set to "true" on a NodeCluster or a ClusterNode being deleted to let its deletion finish
without deleting its machines: the way out when they cannot be deleted (their NodeProvider
deleted anyway, credentials revoked for good). On a NodeCluster it counts only once the
NodeCluster itself is being deleted, so that it cannot make an ordinary scale-in leave
machines behind. Each machine left is named in a Warning Event (`MachineAbandoned`)."""


def annotated_true(annotations: Mapping[str, str], key: str) -> bool:
    """Whether annotation `key` says yes ("true", "1" or "yes", any case), as the operator's
    boolean annotations are read."""
    return annotations.get(key, "false").strip().lower() in ("true", "1", "yes")


class CamelModel(BaseModel):
    """Base of every API model: camelCase aliases, tolerant of fields added by newer versions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=False,
    )

    explain: ClassVar[str] = ""
    """What an object of this model decides, for a person reading `kubectl explain`: its
    schema's description. Each model states its own (it is not inherited: a subclass means
    something else); without one the schema has none, and tests/unit/test_crd_descriptions.py
    fails. Not the docstring, which is for whoever changes the code."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The model's schema, described by its own `explain` and never by its docstring."""
        schema = handler(core_schema)
        own = handler.resolve_ref_schema(schema)
        explain = cls.__dict__.get("explain", "")
        if explain:
            own["description"] = explain
        else:
            own.pop("description", None)
        return schema

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form Kubernetes expects: aliases, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


IntOrPercent = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",
                    "message": "must be a non-negative whole number or a percentage such as '25%'",
                }
            ],
        }
    ),
]
"""A count or a percentage of the cluster's target, as in Kubernetes' maxSurge."""

# Label rules, as the API server applies them to metadata.labels (apimachinery's
# IsQualifiedName and IsValidLabelValue), with its wording. `[.]`, not `\.`: no escapes
# to get wrong between Python, YAML and CEL string literals.
_LABEL_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_NAME = _LABEL_NAME
"""The name part of a label key, and a non-empty label value (apimachinery's regex)."""
LABEL_KEY_PREFIX = "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
"""The optional prefix of a label key: a lowercase DNS subdomain."""
_LABEL_CHARS = (
    "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_SUBDOMAIN = "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_NAME = (
    "must be a name of at most 63 characters, optionally prefixed by a DNS subdomain and '/' "
    f"(e.g. 'example.com/MyName'); the name must {_LABEL_CHARS} "
    "(e.g. 'MyName', or 'my.name', or '123-abc')"
)
_KEY_PREFIX = (
    "(before the '/') must be a lowercase RFC 1123 subdomain of at most 253 characters: "
    "lower case alphanumeric characters, '-' or '.', starting and ending with an "
    "alphanumeric character (e.g. 'example.com')"
)
MAX_LABELS = 64
"""Labels per object: GCP's limit on a resource, and above AWS's and Azure's 50 tags (the
labels are also the machine's tags). The CEL cost estimate is multiplied by it: without
a bound the key rules would not fit the API server's budget."""
RESERVED_LABEL_PREFIX = f"{GROUP}/"
"""The operator's own labels (`nodecluster.io/cluster`, the scale selector) live here."""
_RESERVED = (
    f"'{RESERVED_LABEL_PREFIX}' is reserved for the operator "
    f"(it sets {RESERVED_LABEL_PREFIX}cluster on every node itself)"
)


def _every_key(
    condition: str, message: str, about_key: str, reason: str = "FieldValueInvalid"
) -> dict[str, str]:
    """A rule over every key of a map whose refusal names a key that broke it
    (`label key "bad key": <about_key>`); `message` is the API server's fallback.

    One key, not all of them: the cost estimator cannot size the elements of a computed
    list, so `.map()` or `.join()` over the offenders is refused as far over budget,
    while indexing it is not."""
    offender = f"self.filter(k, !({condition}))[0]"
    return {
        "rule": f"self.all(k, {condition})",
        "messageExpression": f"'label key \"' + {offender} + '\": ' + \"{about_key}\"",
        "message": message,
        "reason": reason,
    }


LabelMap = Annotated[
    dict[str, str],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_LABELS,
            "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "x-kubernetes-validations": [
                    {
                        "rule": f"self.matches('^({_LABEL_NAME})?$')",
                        "message": "label values must be 63 characters or less and be empty or "
                        f"{_LABEL_CHARS} (e.g. 'MyValue', or 'my_value', or '12345')",
                    }
                ],
            },
            "x-kubernetes-validations": [
                # At most one '/', then the name. The length guard keeps a huge key from
                # spending the request's CEL budget on the regex (253 + 1 + 63).
                _every_key(
                    f"k.size() <= 317 && k.matches('^([^/]*/)?({_LABEL_NAME})$') "
                    "&& k.substring(k.lastIndexOf('/') + 1).size() <= 63",
                    f"label keys {_KEY_NAME}",
                    _KEY_NAME,
                ),
                _every_key(
                    "!k.contains('/') || (k.indexOf('/') <= 253 "
                    f"&& k.substring(0, k.indexOf('/')).matches('^{_SUBDOMAIN}$'))",
                    f"label key prefixes {_KEY_PREFIX}",
                    f"the prefix {_KEY_PREFIX}",
                ),
                # Refused rather than overwritten: the operator sets nodecluster.io/cluster
                # on every node after copying these, so a user's value would vanish without
                # a word; the whole prefix, so that a label the operator adds later cannot
                # collide with one a user already has (refusing it then would be stricter
                # validation of stored objects, which this API version promises not to do).
                _every_key(
                    f"!k.startsWith('{RESERVED_LABEL_PREFIX}')",
                    f"label keys with the prefix {_RESERVED}",
                    f"the prefix {_RESERVED}",
                    reason="FieldValueForbidden",
                ),
            ],
        }
    ),
]
"""Labels the operator copies onto objects' metadata.labels: refused at admission exactly
where metadata.labels would refuse them, so a bad label fails the apply that adds it and
not, forever, every node create. Not checked by pydantic: the API server is the gate,
and an object stored before these rules must still parse."""

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    """A kstatus-style condition, as `kubectl wait --for=condition=...` and Flux read them."""

    explain = (
        "One condition of the object, in the form `kubectl wait --for=condition=<type>`, "
        "Flux and Argo CD read: whether it holds, why in one word, and why in a sentence."
    )

    type: str = Field(
        description="Which condition this is (Ready, Stalled, ...): the `conditions` field "
        "of each kind lists its own."
    )
    status: ConditionStatus = Field(
        description="Whether the condition holds: True, False, or Unknown (not known yet)."
    )
    reason: str = Field(
        default="",
        description="Why, as one CamelCase word that tools can match on (e.g. "
        "QuotaExceeded); default empty.",
    )
    message: str = Field(
        default="",
        description="Why, in a sentence for people: what happened and, when someone must "
        "act, what to do; default empty.",
    )
    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation the condition was computed from: one older than "
        "the object's generation is about a spec that has since changed.",
    )
    last_transition_time: datetime | None = Field(
        default=None,
        description="When status last changed between True, False and Unknown (not when the "
        "condition was last computed).",
    )


class OwnerReference(CamelModel):
    """The subset of metadata.ownerReferences the operator reads and writes."""

    api_version: str = Field(description="API version of the owner.")
    kind: str = Field(description="Kind of the owner.")
    name: str = Field(description="Name of the owner.")
    uid: str = Field(description="UID of the owner.")
    controller: bool | None = Field(default=None, description="Whether the owner manages it.")
    block_owner_deletion: bool | None = Field(default=None, description="Foreground deletion.")


class ObjectMeta(CamelModel):
    """The subset of Kubernetes object metadata the operator relies on."""

    name: str = Field(default="", description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace, for namespaced kinds.")
    uid: str = Field(default="", description="Server-assigned identity.")
    generation: int = Field(default=0, description="Bumped by the server on every spec change.")
    resource_version: str = Field(default="", description="Optimistic-concurrency token.")
    creation_timestamp: datetime | None = Field(default=None, description="When created.")
    deletion_timestamp: datetime | None = Field(default=None, description="Set once deleting.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    finalizers: list[str] = Field(default_factory=list, description="Finalizers.")
    owner_references: list[OwnerReference] = Field(
        default_factory=list, description="Owners (for garbage collection)."
    )


class LocalObjectRef(CamelModel):
    """A reference to a named object (namespace implied or given)."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the object."
    )


class SecretRef(CamelModel):
    """Where a Secret lives. Only the reference is stored; the values never leave the Secret."""

    explain = (
        "A Secret, by namespace and name. Only the reference is stored here: the Secret's "
        "values never leave it, and the operator never logs them."
    )

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the Secret, in `namespace`, whose keys are handed over.",
    )
    namespace: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description=(
            "Namespace the Secret is in: always given, because NodeProviders are "
            "cluster-scoped and have none of their own."
        ),
    )
