"""deploy/: the Grafana dashboard, the Prometheus scrape config and its alert rules.

The dashboard is checked as Grafana reads it (valid JSON, unique panel ids, panels
inside the 24-column grid, every query on the dashboard's Prometheus variable), and
then for real: a live demo pipeline (feed -> journal -> radar) served by
``journal demo --metrics-listen``, scraped by a real Prometheus (Debian's package,
installed by ``make test``), and every dashboard query, variable and alert
expression evaluated by it: each must name series that exist and return data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "orderbook-journal.json"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="no prometheus/promtool (make test installs Debian's prometheus package)",
)
# Grafana's variables, as the dashboard's queries would be sent with "All" selected.
GRAFANA_VARIABLES = {
    "$__rate_interval": "15s",
    "$journal": ".*",
    "$venue": ".*",
    "$radar": ".*",
}
OUR_METRIC = re.compile(r"\b(?:journal|radar)_[a-z0-9_]+\b")
DEADLINE_S = 60.0


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def variable_queries() -> dict[str, str]:
    return {
        item["name"]: item["query"]["query"]
        for item in dashboard()["templating"]["list"]
        if item["type"] == "query"
    }


def alert_expressions() -> dict[str, str]:
    text = ALERTS.read_text()
    names = re.findall(r"- alert: (\w+)", text)
    expressions = re.findall(r"^\s+expr: (.+)$", text, flags=re.MULTILINE)
    assert len(names) == len(expressions) > 0
    return dict(zip(names, expressions, strict=True))


def grafana_expanded(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"a Grafana variable the test does not know: {expression}"
    return expression


# -- the files as Grafana and Prometheus read them ---------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    model = dashboard()
    assert model["title"] and model["uid"] and isinstance(model["schemaVersion"], int)
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {item["name"] for item in model["templating"]["list"]}
    assert {"datasource", "journal", "venue", "radar"} <= variables
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        assert panel["description"], f"{panel['title']}: say what the panel shows"
        for target in panel["targets"]:
            assert OUR_METRIC.search(target["expr"]), target["expr"]


def test_the_dashboard_declares_only_inputs_it_uses() -> None:
    """An exported dashboard's ``__inputs`` make Grafana's import ask for each one:
    one that no panel uses (they all take the ``${datasource}`` variable) is a
    question for nothing."""
    model = dashboard()
    text = DASHBOARD.read_text()
    for item in model.get("__inputs", []):
        assert "${" + item["name"] + "}" in text, f"__inputs {item['name']} is never used"


def test_every_alert_is_documented() -> None:
    """docs/METRICS.md names every alert of alerts.yml, and no other."""
    documented = set(re.findall(r"^\| `(\w+)` \|", _alerts_section(), flags=re.MULTILINE))
    assert documented == set(alert_expressions())


def _alerts_section() -> str:
    text = (REPO / "docs" / "METRICS.md").read_text()
    start = text.index("\n## Alerts\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_dashboard_covers_what_a_desk_watches() -> None:
    """Writers, readers and lag, feed health per venue, premiums and edges per pair,
    latency: each has a panel querying its metrics."""
    text = "\n".join(queries())
    for metric in (
        "journal_records_total",
        "journal_append_latency_seconds_bucket",
        "journal_reader_lag_seconds",
        "journal_reader_lag_records",
        "journal_feed_state",
        "journal_feed_messages_total",
        "journal_feed_last_message_age_seconds",
        "radar_kimchi_premium_ratio",
        "radar_executable_edge_ratio",
        "radar_fx_krw_per_usdt",
        "radar_book_age_seconds",
        "radar_observe_latency_seconds_bucket",
    ):
        assert metric in text, f"no panel queries {metric}"


@needs_prometheus
def test_promtool_accepts_the_scrape_config_and_the_alert_rules() -> None:
    for command in (["check", "config", str(SCRAPE_CONFIG)], ["check", "rules", str(ALERTS)]):
        run = subprocess.run([PROMTOOL, *command], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


# -- every query against a real Prometheus scraping a live pipeline ----------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class _Prometheus:
    """A real Prometheus scraping ``target`` every second, its data in a temp dir."""

    def __init__(self, target: str, workspace: Path) -> None:
        config = SCRAPE_CONFIG.read_text()
        config = config.replace("scrape_interval: 5s", "scrape_interval: 1s")
        config = config.replace('targets: ["localhost:9108"]', f'targets: ["{target}"]')
        assert target in config, "the scrape config's target line changed: update this test"
        shutil.copy(ALERTS, workspace / ALERTS.name)
        (workspace / "prometheus.yml").write_text(config)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        assert PROMETHEUS is not None
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={workspace / 'prometheus.yml'}",
                f"--storage.tsdb.path={workspace / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(workspace / "prometheus.log").open("w"),
        )

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        assert answer["status"] == "success", f"{expression}: {answer}"
        return list(answer["data"]["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        query = urllib.parse.urlencode({"match[]": match})
        answer = _get(f"{self.url}/api/v1/label/{label}/values?{query}")
        assert answer["status"] == "success", answer
        return list(answer["data"])

    def wait_for_samples(self, count: int) -> None:
        """Until ``count`` scrapes of the target are stored (rates need two)."""
        deadline = time.monotonic() + DEADLINE_S
        seen = 0
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited: see prometheus.log"
            try:
                result = self.query('count_over_time(up{job="orderbook-journal"}[5m])')
                seen = int(float(result[0]["value"][1])) if result else 0
                healthy = self.query('up{job="orderbook-journal"} == 1')
            except OSError:  # not listening yet
                seen, healthy = 0, []
            if seen >= count and healthy:
                return
            time.sleep(0.2)  # polling Prometheus' own API, with a deadline
        raise AssertionError(f"prometheus stored {seen} scrapes of the target in {DEADLINE_S} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serving_url(demo: subprocess.Popen[str]) -> str:
    """The demo's ``serving http://HOST:PORT/metrics`` line (its first line on stdout)."""
    assert demo.stdout is not None
    deadline = time.monotonic() + DEADLINE_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        seen.append(line)
        if match := re.search(r"serving (http://\S+/metrics)", line):
            return match.group(1)
    raise AssertionError(f"journal demo never said where it serves metrics: {seen}")


@pytest.fixture
def live_prometheus() -> Iterator[_Prometheus]:
    """A live demo pipeline serving its metrics, and Prometheus scraping it."""
    with tempfile.TemporaryDirectory(prefix="journal-deploy-") as temporary:
        workspace = Path(temporary)
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "journal.cli",
                "demo",
                "--duration",
                "120",
                "--rate",
                "2000",
                "--output",
                str(workspace / "demo"),
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        prometheus = None
        try:
            target = urllib.parse.urlsplit(_serving_url(demo)).netloc
            prometheus = _Prometheus(target, workspace)
            prometheus.wait_for_samples(5)
            yield prometheus
        finally:
            if prometheus is not None:
                prometheus.stop()
            demo.send_signal(signal.SIGINT)  # the demo stops its children in order
            try:
                demo.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.communicate()


@needs_prometheus
@pytest.mark.slow
def test_every_dashboard_query_and_alert_returns_data_from_a_live_pipeline(
    live_prometheus: _Prometheus,
) -> None:
    empty = [expr for expr in queries() if not live_prometheus.query(grafana_expanded(expr))]
    assert not empty, f"dashboard queries with no data from a live pipeline: {empty}"
    for name, query in variable_queries().items():
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
        assert match, f"${name}: {query}"
        assert live_prometheus.label_values(match.group(2), match.group(1)), query
    for name, expression in alert_expressions().items():
        live_prometheus.query(expression)  # valid PromQL, as Prometheus evaluates it
        for metric in OUR_METRIC.findall(expression):
            assert live_prometheus.query(metric), f"alert {name}: no series {metric}"
