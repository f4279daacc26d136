"""The PromQL of the chart's dashboard and alert rules, and the metric names it uses.

Grafana and Prometheus both accept a query on a metric that does not exist: the panel is
empty, the alert never fires, and nobody notices until the day it should have. So the
tests compare the names these queries use with the metric names the operator promises
(tests/metric_names.txt, the README's metrics table) and with a live scrape
(tests/e2e/test_metrics_names.py).

promtool parses PromQL but cannot list the metrics of an expression, hence the small
tokenizer below. It needs to be right only for the PromQL this chart writes, and fails
loudly on what it does not understand rather than guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "nodecluster-operator" / "dashboards" / "nodecluster.json"
CONTRACT_NAMES = ROOT / "tests" / "metric_names.txt"

# Series Prometheus makes itself for every target, not the operator.
PROMETHEUS_OWN = frozenset({"up"})

# Grafana's variables, each replaced by something of the same PromQL type so that
# promtool can parse a panel's query: a duration inside [...], a regex inside "...".
GRAFANA_DURATIONS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
GRAFANA_REGEX = ".*"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
# Label lists of aggregations and vector matching: by (...), on (...), group_left (...).
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)
_LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (histogram series with their suffix)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word in _KEYWORDS:
            continue  # a function or aggregation, or an operator word
        if word.startswith("$"):
            raise ValueError(f"a Grafana variable outside a matcher or range in {expr!r}")
        names.add(word)
    leftover = re.sub(r"[\s()+\-*/^%<>=!,]|\"\"", "", _IDENT.sub("", text))
    if leftover:
        raise ValueError(f"cannot read {leftover!r} in {expr!r}")
    return names


def family(name: str) -> str:
    """A series name's metric family: a histogram's _bucket/_sum/_count cut off."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression of a dashboard: its panels' (nested in rows too)."""

    def panels(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield str(target["expr"])


def dashboard_variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Metric names the dashboard's variables list label values of."""
    found: set[str] = set()
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = _LABEL_VALUES.match(query)
        if match is None:
            raise ValueError(
                f"variable {variable['name']}: not label_values(metric, label): {query!r}"
            )
        found.add(match.group(1))
    return found


def as_promql(query: str) -> str:
    """A panel's query with Grafana's variables replaced, for promtool to parse."""
    for variable, duration in GRAFANA_DURATIONS.items():
        query = query.replace(variable, duration)
    query = re.sub(r"\$\{?[A-Za-z_]\w*\}?", GRAFANA_REGEX, query)
    return query


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Every metric name the dashboard uses, in its panels and variables."""
    names = set(dashboard_variable_metrics(dashboard))
    for query in dashboard_queries(dashboard):
        names |= metric_names(query)
    return names


def rule_metrics(groups: list[dict[str, Any]]) -> set[str]:
    """Every metric name the rule groups' expressions use."""
    return {
        name for group in groups for rule in group["rules"] for name in metric_names(rule["expr"])
    }


def contract_names(path: Path = CONTRACT_NAMES) -> set[str]:
    """The metric families the operator promises (one a line, # comments)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def exposed_series_names(exposition: str) -> set[str]:
    """Every series name a scrape can be queried by, from the families of the text format.

    From the families (their TYPE lines), not only the samples: a labelled counter or
    histogram that has counted nothing yet has no sample, and still exists."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for fam in text_string_to_metric_families(exposition):
        if fam.type == "counter":
            names.add(f"{fam.name}_total")
        elif fam.type in ("histogram", "gaugehistogram"):
            names |= {fam.name + suffix for suffix in _HISTOGRAM_SUFFIXES}
        elif fam.type == "summary":
            names |= {fam.name, f"{fam.name}_sum", f"{fam.name}_count"}
        else:
            names.add(fam.name)
        names |= {sample.name for sample in fam.samples}
    return names
