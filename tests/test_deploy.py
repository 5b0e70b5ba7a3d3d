"""deploy/: the Grafana dashboard, the Prometheus scrape config and its alert rules.

The dashboard is checked as Grafana reads it (valid JSON, unique panel ids, panels
inside the 24-column grid, every query on the dashboard's Prometheus variable), and
then for real: a live demo pipeline (feed -> journal -> radar) served by
``journal demo --metrics-listen``, one of its journals replicated through a real
nats-server (``journal replicate``) into a mirror journal (``journal mirror``) served
by its own ``journal metrics --listen``, as a mirror host's exporter, both scraped
by a real Prometheus (Debian's package, installed by ``make test``), and every
dashboard query, variable and alert expression evaluated by it: each must name
series that exist and return data, the Replication row's for both sides of the pair.
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

from tests._replication import JOURNAL, Process, mirror, replicate, wait_for
from tests.conftest import REPO
from tests.nats_server import NatsServer, nats_server  # noqa: F401  (a fixture)

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
REPLICATED = "upbit"
"""The demo's venue journal the live test replicates and mirrors."""


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def row_queries(title: str) -> list[str]:
    """The queries of the panels under the row named ``title``, up to the next row."""
    found: list[str] = []
    inside = False
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == title
        elif inside:
            found.extend(target["expr"] for target in panel["targets"])
    return found


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
        "journal_replication_up",
        "journal_replication_nats_connected",
        "journal_replication_records_total",
        "journal_replication_lag_records",
        "journal_replication_lag_seconds",
        "journal_replication_pending_messages",
        "journal_replication_delay_seconds",
        "journal_replication_redeliveries_total",
        "journal_replication_gaps_total",
    ):
        assert metric in text, f"no panel queries {metric}"
    assert all("journal_replication_" in query for query in row_queries("Replication"))


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
    """A real Prometheus scraping ``targets`` every second, its data in a temp dir."""

    def __init__(self, targets: list[str], workspace: Path) -> None:
        config = SCRAPE_CONFIG.read_text()
        config = config.replace("scrape_interval: 5s", "scrape_interval: 1s")
        listed = ", ".join(f'"{target}"' for target in targets)
        config = config.replace('targets: ["localhost:9108"]', f"targets: [{listed}]")
        assert listed in config, "the scrape config's target line changed: update this test"
        shutil.copy(ALERTS, workspace / ALERTS.name)
        (workspace / "prometheus.yml").write_text(config)
        self.targets = len(targets)
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
        """Until ``count`` scrapes of every target are stored (rates need two), each
        target up."""
        deadline = time.monotonic() + DEADLINE_S
        seen = 0
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited: see prometheus.log"
            try:
                stored = self.query('count_over_time(up{job="orderbook-journal"}[5m])')
                healthy = self.query('up{job="orderbook-journal"} == 1')
            except OSError:  # not listening yet
                stored, healthy = [], []
            seen = min((int(float(each["value"][1])) for each in stored), default=0)
            if len(stored) == self.targets and seen >= count and len(healthy) == self.targets:
                return
            time.sleep(0.2)  # polling Prometheus' own API, with a deadline
        raise AssertionError(
            f"prometheus stored {seen} scrapes of each of {self.targets} targets in {DEADLINE_S} s"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _demo_started(demo: subprocess.Popen[str]) -> tuple[str, Path]:
    """The demo's ``serving http://HOST:PORT/metrics`` URL (its first line on stdout)
    and its books directory (``journal demo: feed -> BOOKS -> radar``, the next)."""
    assert demo.stdout is not None
    deadline = time.monotonic() + DEADLINE_S
    seen: list[str] = []
    url = None
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        seen.append(line)
        if match := re.search(r"serving (http://\S+/metrics)", line):
            url = match.group(1)
        elif (match := re.search(r"feed -> (\S+) -> radar", line)) and url is not None:
            return url, Path(match.group(1))
    raise AssertionError(f"journal demo never said where it serves metrics and writes: {seen}")


def _exporter_url(exporter: subprocess.Popen[str]) -> str:
    """``journal metrics --listen``'s ``serving http://HOST:PORT/metrics`` line."""
    assert exporter.stdout is not None
    line = exporter.stdout.readline()
    match = re.search(r"^serving (http://\S+/metrics)", line)
    assert match, f"journal metrics --listen said {line!r}, exit status {exporter.poll()}"
    return match.group(1)


@pytest.fixture
def live_prometheus(nats_server: NatsServer) -> Iterator[_Prometheus]:  # noqa: F811
    """A live demo pipeline serving its metrics; its upbit journal replicated through
    a real nats-server by ``journal replicate`` (the replicator's series on the
    demo's endpoint: its file is in the source journal) and copied by ``journal
    mirror`` into a tmpfs root served by its own exporter, as on a mirror host; and
    Prometheus scraping both endpoints."""
    with tempfile.TemporaryDirectory(prefix="journal-deploy-") as temporary:
        workspace = Path(temporary)
        mirror_root = Path(tempfile.mkdtemp(prefix="journal-deploy-mirror-", dir="/dev/shm"))
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
        logs = [workspace / "replicate.log", workspace / "mirror.log"]
        pair: list[Process] = []
        exporter = None
        prometheus = None
        try:
            demo_url, books = _demo_started(demo)
            source = books / REPLICATED
            pair.append(replicate(nats_server.url, [source], logs[0]).start())
            pair.append(mirror(nats_server.url, mirror_root, logs[1]).start())
            exporter = subprocess.Popen(
                [str(JOURNAL), "metrics", str(mirror_root), "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=(workspace / "exporter.log").open("w"),
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            mirror_url = _exporter_url(exporter)
            # Both sides' files made (the mirror's with its journal's first message)
            # before Prometheus starts: every replication series from its first scrape.
            wait_for(
                lambda: (
                    (source / "replicate.metrics").exists()
                    and (mirror_root / REPLICATED / "mirror.metrics").exists()
                ),
                DEADLINE_S,
                "replicate.metrics and mirror.metrics",
                logs,
            )
            targets = [urllib.parse.urlsplit(url).netloc for url in (demo_url, mirror_url)]
            prometheus = _Prometheus(targets, workspace)
            prometheus.wait_for_samples(5)
            yield prometheus
        finally:
            if prometheus is not None:
                prometheus.stop()
            if exporter is not None:
                exporter.terminate()
                exporter.communicate(timeout=30)
            codes = [process.terminate() for process in pair]
            demo.send_signal(signal.SIGINT)  # the demo stops its children in order
            try:
                demo.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.communicate()
            shutil.rmtree(mirror_root, ignore_errors=True)
        assert codes == [0] * len(pair), f"replicate, mirror exit statuses {codes}: {logs}"


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
    # The Replication row sees the pair: the replicator behind the demo's endpoint,
    # the mirror behind its own, both up, connected, moving the demo's books.
    for metric in ("_up", "_nats_connected", "_records_total", "_delay_seconds"):
        (query,) = [q for q in row_queries("Replication") if f"journal_replication{metric}" in q]
        result = live_prometheus.query(grafana_expanded(query))
        assert {series["metric"]["role"] for series in result} == {"replicate", "mirror"}, query
        assert all(float(series["value"][1]) > 0 for series in result), (query, result)
    # Both sides' lag, each from its own host's exporter.
    lags = {
        s["metric"]["role"]: s for s in live_prometheus.query("journal_replication_lag_records")
    }
    assert set(lags) == {"replicate", "mirror"}, lags
    assert all(lag["metric"]["journal"] == REPLICATED for lag in lags.values())
    (pending,) = live_prometheus.query("journal_replication_pending_messages")
    assert pending["metric"]["role"] == "mirror" and pending["metric"]["journal"] == REPLICATED
    assert lags["replicate"]["metric"]["instance"] != pending["metric"]["instance"]
    assert lags["mirror"]["metric"]["instance"] == pending["metric"]["instance"]
