"""The Dagster UI as a person sees it, in a real browser: headless Debian chromium driven by Playwright
(``make test-browser`` installs both), against ``mixtrain ui`` on a small project with one materialized source.

GraphQL answers (tests/test_webserver.py) say what the UI is given; these say what it shows: the lineage reads
left to right, an asset page shows the row count and the column schema, the README's lineage picture
(scripts/screenshot_lineage.py) still frames every group, and the page logs no errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.screenshot_lineage import COMMUNITY_PROMPT_SEEN, save_lineage
from tests.ui_server import mixtrain_ui

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"
SOURCE = "stdlib_code"  # a text source: three small files written here stand in for the generated demo data
GATING_OUTPUTS = (["raw_documents"], ["raw_rejects"], ["review_overrides"], ["vault", "raw_rejects"])
GATED_OUTPUTS = (["gated_documents"], ["decision_log"], ["quarantine"])
GROUPS_LEFT_TO_RIGHT = ["sources", "corpus", "curation", "mixture", "training", "evaluation"]
CHAIN = ["source_spec", "raw_documents", "gated_documents", "mixture", "sft_adapter", "eval_report"]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make test-browser` (it installs chromium and playwright)")
    return path


def _small_project(root: Path) -> Path:
    """The demo's config and source specs with one source's files: enough to load every asset and to
    materialize that source's gating in seconds (the full demo data takes minutes to generate)."""
    root.mkdir(parents=True)
    shutil.copy(DEMO / "mixtrain.yaml", root / "mixtrain.yaml")
    shutil.copytree(DEMO / "sources", root / "sources")
    data = root / "data" / SOURCE
    data.mkdir(parents=True)
    for i in range(3):
        data.joinpath(f"module_{i}.txt").write_text(
            f'"""Module {i}."""\n\n\ndef add_{i}(x: int) -> int:\n    """Add {i} to x."""\n    return x + {i}\n'
        )
    return root


def _materialize_one_source(root: Path) -> None:
    """Gate one source under the data_refresh job, in a child process so this one keeps its environment."""
    code = f"""
from dagster import AssetKey
from mixtrain.instance import activate, load_definitions, open_instance
from mixtrain.runner import sync_partitions

project = activate({str(root)!r})
defs = load_definitions(project)
job = defs.resolve_job_def("data_refresh")
with open_instance(project) as instance:
    sync_partitions(project, instance)
    for outputs in ({GATING_OUTPUTS!r}, {GATED_OUTPUTS!r}):
        keys = [AssetKey(path) for path in outputs]
        result = job.execute_in_process(instance=instance, asset_selection=keys, partition_key={SOURCE!r})
        assert result.success, keys
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MIXTRAIN_PROJECT")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory) -> Iterator[str]:
    root = _small_project(tmp_path_factory.mktemp("browser") / "project")
    _materialize_one_source(root)
    with mixtrain_ui(root, "--no-automation") as url:  # the daemon would start building the project meanwhile
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="`make test-browser` installs playwright")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


class Page:
    """One browser page that records console errors and uncaught exceptions while it is open."""

    def __init__(self, browser, tmp_path: Path):
        self.page = browser.new_page(viewport={"width": 1600, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.shot = tmp_path / "page.png"

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="domcontentloaded", timeout=60_000)

    def node_x(self, name: str) -> float:
        """Left edge of the graph node (inside the SVG's foreignObject) labelled exactly ``name``."""
        node = self.page.locator("foreignObject").get_by_text(name, exact=True).first
        node.wait_for(state="visible", timeout=60_000)
        box = node.bounding_box()
        assert box is not None, f"{name} is not laid out"
        return box["x"]

    def close(self) -> None:
        self.page.screenshot(path=str(self.shot))  # kept in the test's tmp dir for a look after a failure
        self.page.close()


@pytest.fixture
def page(browser, tmp_path) -> Iterator[Page]:
    p = Page(browser, tmp_path)
    yield p
    p.close()
    assert not p.errors, f"the page logged errors: {p.errors}"


def test_collapsed_lineage_reads_from_sources_to_evaluation(ui_url, page):
    page.open(f"{ui_url}/asset-groups")
    xs = {group: page.node_x(group) for group in [*GROUPS_LEFT_TO_RIGHT, "inputs"]}
    ordered = [xs[g] for g in GROUPS_LEFT_TO_RIGHT]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered), xs
    assert xs["inputs"] < xs["training"], xs  # the base model and eval registry sit upstream of their users


def test_the_readme_picture_frames_every_group(ui_url, page, tmp_path):
    page.page.add_init_script(COMMUNITY_PROMPT_SEEN)
    shot = tmp_path / "lineage.png"
    clip = save_lineage(page.page, ui_url, shot)  # fails when a group is missing or outside the page
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert abs(width - clip["width"]) <= 2 and abs(height - clip["height"]) <= 2, (width, height, clip)
    assert width > 3 * height  # the groups read left to right in one band


def test_lineage_shows_the_chain_from_a_source_to_the_eval_report(ui_url, page):
    page.open(f"{ui_url}/assets/eval_report?view=lineage&lineageScope=upstream&lineageDepth=12")
    xs = [page.node_x(name) for name in CHAIN]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), dict(zip(CHAIN, xs, strict=True))


def test_asset_page_shows_row_count_and_column_schema(ui_url, page):
    page.open(f"{ui_url}/assets/gated_documents")
    body = page.page.locator("body")
    body.get_by_text("Row count", exact=True).wait_for(timeout=60_000)
    body.get_by_text("Columns", exact=True).wait_for(timeout=60_000)
    text = body.inner_text()
    after = text.split("Row count", 1)[1].split()
    assert after[0] == "3", after[:5]  # the three files of the one materialized source
    columns = text.split("Columns", 1)[1]
    assert "doc_id" in columns and "rights_tags" in columns and "non-nullable" in columns
