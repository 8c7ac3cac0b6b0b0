"""The UI's view: one code location holding all three packages, with edges from raw sources to evaluation."""

from __future__ import annotations

import time

import pytest
import requests

from tests.ui_server import mixtrain_ui

QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } repository { location { name } } } }"
SENSORS = """{ sensorsOrError(
  repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "mixtrain"}
) { ... on Sensors { results { name sensorState { status } } } } }"""


@pytest.fixture
def webserver(tiny_project):
    """``mixtrain ui --no-automation`` (dagster dev -w workspace.yaml) on the tiny project. The test only looks: a
    running daemon would start building the project meanwhile."""
    with mixtrain_ui(tiny_project, "--no-automation", ready_within_s=90) as url:
        yield url


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
