"""Dashboards, alerts and SLOs as code: the Cloud Monitoring dashboard and the Grafana
one show the same panels; every metric any of them queries is one the functions
export (deploy/monitoring/metrics.tsv, which must list exactly the names in
functions/src); every alert links a runbook section that exists."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest

import grafana
from conftest import REPO, TfDir

MONITORING = REPO / "deploy" / "monitoring"
# "dropgate_..." strings in functions/src that are not metrics.
NOT_METRICS = {"dropgate_runtime"}
# Metrics of the platform, not of dropgate: GKE's kube state metrics, which the gke
# module turns on (monitoring_config's HPA component).
PLATFORM_METRICS = {
    "kube_horizontalpodautoscaler_status_current_replicas": "HPA",
    "kube_horizontalpodautoscaler_spec_max_replicas": "HPA",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def exported() -> dict[str, dict]:
    lines = [line for line in (MONITORING / "metrics.tsv").read_text().splitlines() if not line.startswith("#")]
    return {row["name"]: row for row in csv.DictReader(lines, delimiter="\t")}


def metric_names(text: str) -> set[str]:
    """Metric names a PromQL query (or a Cloud Monitoring filter) reads."""
    names = set(re.findall(r"\bdropgate_[a-z_]+", text))
    out = set()
    for name in names:
        for suffix in HISTOGRAM_SERIES:
            base = name.removesuffix(suffix)
            if base != name and exported().get(base, {}).get("type") == "histogram":
                name = base
        out.add(name)
    return out


def modules_gke_monitoring():
    cluster = TfDir(REPO / "terraform" / "modules" / "gke").resources()[("google_container_cluster", "main")]
    config = cluster["monitoring_config"]
    return config[0] if isinstance(config, list) else config


@pytest.fixture(scope="module")
def monitoring(modules) -> TfDir:
    return modules["monitoring"]


def test_the_metric_list_names_exactly_what_the_functions_export():
    in_code = set()
    for path in (REPO / "functions" / "src").rglob("*.rs"):
        in_code |= set(re.findall(r'"(dropgate_[a-z_]+)"', path.read_text()))
    in_code -= NOT_METRICS
    listed = exported()
    assert set(listed) == in_code, f"listed only: {set(listed) - in_code}; exported only: {in_code - set(listed)}"
    for name, row in listed.items():
        assert row["type"] in {"counter", "gauge", "histogram"}, name
        assert (row["type"] == "counter") == name.endswith("_total"), name
        assert row["every_drop"] in {"yes", "no"} and row["meaning"], name


def test_every_panel_and_alert_queries_exported_metrics(monitoring: TfDir):
    listed = set(exported())
    panels = json.loads((MONITORING / "panels.json").read_text())
    components = modules_gke_monitoring()["enable_components"]
    for panel in panels["panels"]:
        for query in panel["queries"]:
            names = metric_names(query["promql"])
            platform = {name for name in PLATFORM_METRICS if name in query["promql"]}
            assert names or platform, f"{panel['title']}: the query reads no metric it knows"
            assert names <= listed, f"{panel['title']}: {names - listed}"
            for name in platform:
                assert PLATFORM_METRICS[name] in components, f"{name} needs GKE's {PLATFORM_METRICS[name]} metrics"
    alerts = monitoring.locals()["alerts"]
    assert alerts, "alert policies"
    for name, alert in alerts.items():
        names = metric_names(alert["promql"])
        assert names and names <= listed, f"{name}: {names - listed}"
    slos = monitoring.resources()
    filters = " ".join(str(slos[("google_monitoring_slo", n)]) for n in ("availability", "latency"))
    local_values = monitoring.locals()
    filters += local_values["requests_metric"] + local_values["latency_metric"]
    for name in re.findall(r"prometheus\.googleapis\.com/(dropgate_[a-z_]+)/(counter|histogram|gauge)", filters):
        assert name[0] in listed and exported()[name[0]]["type"] == name[1], name


def test_the_grafana_dashboard_has_the_cloud_monitoring_panels():
    built = grafana.render()
    path = MONITORING / "grafana-dashboard.json"
    if os.environ.get("DROPGATE_UPDATE_DOCS") == "1":
        path.write_text(built)
    assert path.read_text() == built, "regenerate: python3 infra-tests/grafana.py > deploy/monitoring/grafana-dashboard.json"
    grafana_panels = json.loads(built)["panels"]
    source = json.loads((MONITORING / "panels.json").read_text())["panels"]
    assert [p["title"] for p in grafana_panels] == [p["title"] for p in source]
    assert [[t["expr"] for t in p["targets"]] for p in grafana_panels] == [[q["promql"] for q in p["queries"]] for p in source]


def test_the_dashboard_is_built_from_the_panels(monitoring: TfDir, env_dev: TfDir):
    dashboard = monitoring.resources()[("google_monitoring_dashboard", "drop")]
    assert "local.tiles" in dashboard["dashboard_json"]
    tiles = monitoring.locals()["tiles"]
    assert "var.panels.panels" in tiles and "prometheusQuery = query.promql" in tiles
    call = env_dev.labelled("module")["monitoring"]
    assert "deploy/monitoring/panels.json" in call["panels"]


def test_every_alert_pages_the_channels_and_links_its_runbook_section(monitoring: TfDir):
    policy = monitoring.resources()[("google_monitoring_alert_policy", "alerts")]
    assert policy["for_each"] == "${local.alerts}"
    assert policy["notification_channels"] == "${var.notification_channels}"
    condition = policy["conditions"]
    condition = condition[0] if isinstance(condition, list) else condition
    query = condition["condition_prometheus_query_language"]
    query = query[0] if isinstance(query, list) else query
    assert query["query"] == "${each.value.promql}"
    runbook = (REPO / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    alerts = monitoring.locals()["alerts"]
    wanted = {"queue-api-errors", "enter-latency", "consumer-lag", "undecided-users", "store-unreachable", "dead-letters", "redis-repaired"}
    assert set(alerts) == wanted
    for name, alert in alerts.items():
        assert alert["runbook"] in anchors, f"{name}: docs/runbook.md has no section #{alert['runbook']}"
    assert "uptime" in anchors
    uptime = monitoring.resources()[("google_monitoring_uptime_check_config", "public")]
    http = uptime["http_check"]
    http = http[0] if isinstance(http, list) else http
    assert http["use_ssl"] is True and http["validate_ssl"] is True and http["path"].startswith("/e/")


def test_pubsub_dead_letters_alert_too(monitoring: TfDir, env_dev: TfDir):
    policy = monitoring.resources()[("google_monitoring_alert_policy", "pubsub_dead_letters")]
    assert "length(var.dead_letter_subscriptions)" in policy["count"]
    assert "num_undelivered_messages" in str(policy["conditions"])
    assert "docs/runbook.md#dead-letters" in str(policy["documentation"])
    call = env_dev.labelled("module")["monitoring"]
    assert "module.pubsub[0].dead_letter_subscriptions" in call["dead_letter_subscriptions"]
