"""The Grafana dashboard (for Managed Prometheus users) built from the same panels as
the Cloud Monitoring dashboard Terraform makes: deploy/monitoring/panels.json.

    python3 infra-tests/grafana.py > deploy/monitoring/grafana-dashboard.json

test_monitoring.py checks the committed file is what this builds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

PANELS = Path(__file__).resolve().parent.parent / "deploy" / "monitoring" / "panels.json"

UNITS = {"s": "s", "req/s": "reqps", "users": "short", "users/s": "short", "draws/s": "short",
         "units": "short", "pods": "short", "messages": "short", "instances": "short", "per 5 min": "short", "": "short"}


def dashboard(source: dict) -> dict:
    panels = []
    for index, panel in enumerate(source["panels"]):
        panels.append({
            "id": index + 1,
            "type": "timeseries",
            "title": panel["title"],
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": (index % 2) * 12, "y": (index // 2) * 8, "w": 12, "h": 8},
            "fieldConfig": {"defaults": {"unit": UNITS[panel["unit"]]}, "overrides": []},
            "targets": [
                {
                    "refId": chr(ord("A") + n),
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": query["promql"],
                    "legendFormat": query["legend"],
                }
                for n, query in enumerate(panel["queries"])
            ],
        })
    return {
        "title": source["title"],
        "uid": "dropgate-live-drop",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(json.loads(PANELS.read_text())), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
