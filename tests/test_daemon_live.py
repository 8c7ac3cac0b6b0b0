"""Automation as a user gets it: ``mixtrain ui`` with its daemon running (the default), on a project that one
``mixtrain run`` has built. Unit tests evaluate the sensors by hand; this one lets the real daemon tick.

It checks what the README promises: the sensors and the schedule start RUNNING; on a project that is up to date
the automation sensor launches nothing (no retraining loop); an edited spec is observed within seconds (the UI
shows it unsynced); and the daemon then launches a run that rebuilds the mixture from the edited spec.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import build_tiny_project
from tests.ui_server import mixtrain_ui

pytestmark = pytest.mark.reruns

REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "mixtrain"}
INSTIGATORS = """{
  sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mixtrain"}) {
    ... on Sensors { results { name sensorState { status } } } }
  schedulesOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mixtrain"}) {
    ... on Schedules { results { name scheduleState { status } } } }
}"""
TICKS = """query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 20) { status timestamp runIds error { message } } } } } }"""
RUNS = "{ runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }"
OBSERVATIONS = """query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetObservations(limit: 20) { timestamp tags { key value } } } } }"""


def _query(url: str, query: str, **variables: Any) -> dict[str, Any]:
    answer = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30).json()
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def _until(what: str, probe: Callable[[], Any], within_s: float, every_s: float = 2.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within_s:.0f} s")
        time.sleep(every_s)


def _ticks(url: str, sensor: str) -> list[dict[str, Any]]:
    data = _query(url, TICKS, selector={**REPOSITORY, "sensorName": sensor})["sensorOrError"]
    return (data.get("sensorState") or {}).get("ticks") or []


def _runs(url: str) -> list[dict[str, Any]]:
    return _query(url, RUNS)["runsOrError"]["results"]


def _spec_versions(url: str, spec: str) -> list[tuple[float, str]]:
    data = _query(url, OBSERVATIONS, path=[spec])["assetOrError"]
    found = []
    for observation in data.get("assetObservations") or []:
        tags = {t["key"]: t["value"] for t in observation["tags"]}
        if "dagster/data_version" in tags:
            found.append((float(observation["timestamp"]) / 1000, tags["dagster/data_version"]))
    return found


@pytest.fixture(scope="module")
def built_project(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny project after one whole ``mixtrain run`` (in this process, as the CLI's runner does it)."""
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.runner import run_project

    root = build_tiny_project(tmp_path_factory.mktemp("daemon") / "project", tiny_model_dir)
    project = activate(root)
    defs = load_definitions(project)
    with open_instance(project) as instance:
        report = run_project(project, defs, instance, log=lambda s: None)
    assert report.ok, report.failed_runs
    return root


def test_the_daemon_acts_on_an_edited_spec_and_on_nothing_else(built_project: Path) -> None:
    with mixtrain_ui(built_project, ready_within_s=180) as url:
        states = _until("the code location", lambda: _query(url, INSTIGATORS), within_s=120)
        sensors = {s["name"]: s["sensorState"]["status"] for s in states["sensorsOrError"]["results"]}
        schedules = {s["name"]: s["scheduleState"]["status"] for s in states["schedulesOrError"]["results"]}
        assert {"automation_condition_sensor", "spec_observation_sensor", "new_source_sensor"} <= set(sensors)
        assert set(sensors.values()) == {"RUNNING"} and schedules and set(schedules.values()) == {"RUNNING"}
        built = {r["runId"] for r in _runs(url)}  # the runs of the mixtrain run that built the project
        assert built

        # Up to date: two evaluations of the automation sensor launch nothing, and nothing fails.
        ticks = _until(
            "two automation sensor ticks",
            lambda: [t for t in _ticks(url, "automation_condition_sensor") if t["status"] != "STARTED"][1:],
            within_s=180,
        )
        assert all(t["status"] != "FAILURE" for t in ticks), [t["error"] for t in ticks]
        assert {r["runId"] for r in _runs(url)} == built and not any(t["runIds"] for t in ticks)
        spec_ticks = _ticks(url, "spec_observation_sensor")
        assert spec_ticks and all(t["status"] != "FAILURE" for t in spec_ticks), spec_ticks

        # Half the mixture's token budget: the spec is observed at a new version within seconds...
        before = {version for _, version in _spec_versions(url, "mixture_spec")}
        cfg_path = built_project / "mixtrain.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["mixture"]["token_budget"] = max(1, int(cfg["mixture"].get("token_budget") or 100_000) // 2)
        edited_at = time.time()
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        new = _until(
            "an observation of the edited mixture spec",
            lambda: [(t, v) for t, v in _spec_versions(url, "mixture_spec") if v not in before],
            within_s=60,
            every_s=1.0,
        )
        assert new[0][0] - edited_at < 30, f"observed {new[0][0] - edited_at:.1f} s after the edit"

        # ...and the daemon launches a run that rebuilds the mixture (the run is not waited for).
        runs = _until(
            "a run of the mixture launched by the daemon",
            lambda: [
                r
                for r in _runs(url)
                if r["runId"] not in built and ["mixture"] in [a["path"] for a in r["assetSelection"] or []]
            ],
            within_s=150,
        )
        assert all(r["status"] != "FAILURE" for r in runs), runs
