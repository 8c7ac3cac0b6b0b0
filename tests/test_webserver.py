"""The UI's view: one code location holding all three packages, with edges from raw sources to evaluation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]

QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } repository { location { name } } } }"
SENSORS = """{ sensorsOrError(
  repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mixtrain"}
) { ... on Sensors { results { name sensorState { status } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tiny_project):
    """``mixtrain ui --no-automation`` (dagster dev -w workspace.yaml) on a free loopback port; its process group is
    stopped. The test only looks: a running daemon would start building the project meanwhile."""
    port = _free_port()
    mixtrain = str(Path(sys.executable).with_name("mixtrain"))
    cmd = [mixtrain, "ui", "--project", str(tiny_project), "--port", str(port), "--no-automation"]
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MIXTRAIN_PROJECT")}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            assert proc.poll() is None, "mixtrain ui exited early"
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("mixtrain ui did not come up within 90 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _graph(url: str) -> tuple[dict[str, set[str]], set[str]]:
    deadline = time.time() + 60
    while True:  # the code location may still be loading right after start
        data = requests.post(f"{url}/graphql", json={"query": QUERY}, timeout=30).json()
        nodes = (data.get("data") or {}).get("assetNodes") or []
        if nodes or time.time() > deadline:
            break
        time.sleep(1)
    deps = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    locations = {n["repository"]["location"]["name"] for n in nodes}
    return deps, locations


def test_asset_graph_spans_three_packages_in_one_location(webserver):
    deps, locations = _graph(webserver)
    assert locations == {"mixtrain"}
    chain = [
        ("raw_documents", "gated_documents"),
        ("gated_documents", "source_manifest"),
        ("source_manifest", "deduplicated_corpus"),
        ("deduplicated_corpus", "screened_corpus"),
        ("eval_registry", "screened_corpus"),  # eval_assets -> mixassets
        ("screened_corpus", "mixture"),
        ("mixture", "sft_adapter"),  # mixassets -> training_assets
        ("base_model", "sft_adapter"),
        ("sft_adapter", "eval_report"),  # training_assets -> eval_assets
        ("eval_registry", "eval_report"),
    ]
    for upstream, downstream in chain:
        assert upstream in deps.get(downstream, set()), f"missing edge {upstream} -> {downstream}"
    assert "source_spec" in deps["raw_documents"]


def test_no_automation_reaches_the_code_location(webserver):
    """The switch is read where the definitions load (the code server dagster dev starts), not only in the CLI."""
    _graph(webserver)  # waits for the code location
    data = requests.post(f"{webserver}/graphql", json={"query": SENSORS}, timeout=30).json()
    states = {s["name"]: s["sensorState"]["status"] for s in data["data"]["sensorsOrError"]["results"]}
    assert {"automation_condition_sensor", "spec_observation_sensor", "new_source_sensor"} <= set(states)
    assert set(states.values()) == {"STOPPED"}
