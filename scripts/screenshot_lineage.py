"""The README's picture of the lineage (docs/lineage.png): Dagster's global asset lineage of a project with its
groups collapsed (each with its asset count by status), as ``mixtrain ui`` shows it, cropped to the graph.

    make demo
    .venv/bin/python -m scripts.screenshot_lineage --project examples/demo --out docs/lineage.png

It needs what ``make test-browser`` installs (Playwright, the ``browser`` extra, driving Debian's chromium). The
browser test frames the same view with :func:`save_lineage`, so a UI change that breaks the framing fails there
rather than in the next README update. Collapsed, because the expanded graph (some 40 assets) does not fit a
readable picture even at the UI's smallest zoom.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.ui_server import mixtrain_ui

# Every group, in the order the lineage should read (inputs sits above the data groups, feeding their users).
GROUPS = ("sources", "corpus", "curation", "mixture", "training", "evaluation", "inputs")
ZOOM_STEPS = 2  # from the UI's initial fit: the node names readable, the whole graph still on a 1600 px canvas
PADDING_PX = 24
# The UI's "join the community" dialog on a first visit to 127.0.0.1 covers the graph; it is marked seen the way
# the dialog itself marks it when dismissed.
COMMUNITY_PROMPT_SEEN = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"
TIMEOUT_MS = 60_000


def _node(page: Any, group: str) -> Any:
    """The graph node (an SVG foreignObject) of a collapsed group."""
    return page.locator("foreignObject").filter(has=page.get_by_text(group, exact=True)).last


def _wait_for_statuses(page: Any, groups: Sequence[str], timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Until every group node shows its asset counts by status after its name (nothing but digits: before the
    statuses arrive it reads "3 assets (fetching statuses)")."""
    deadline = time.monotonic() + timeout_s
    while True:
        texts = {g: _node(page, g).text_content() or "" for g in groups}
        if all(t.removeprefix(g).isdigit() for g, t in texts.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"group nodes without their asset counts: {texts}")
        time.sleep(0.5)


def _bounds(page: Any, groups: Sequence[str]) -> tuple[float, float, float, float]:
    boxes = [_node(page, g).bounding_box() for g in groups]
    missing = [g for g, b in zip(groups, boxes, strict=True) if b is None]
    if missing:
        raise RuntimeError(f"group nodes not laid out (outside the canvas?): {missing}")
    return (
        min(b["x"] for b in boxes),
        min(b["y"] for b in boxes),
        max(b["x"] + b["width"] for b in boxes),
        max(b["y"] + b["height"] for b in boxes),
    )


def save_lineage(page: Any, base_url: str, path: Path, groups: Sequence[str] = GROUPS) -> dict[str, float]:
    """Open the global lineage on ``page`` (a Playwright page opened with :data:`COMMUNITY_PROMPT_SEEN` as an
    init script), hide the navigation and the asset tree, centre and zoom the graph, and save the part holding
    the ``groups`` to ``path`` as PNG; the clip (x, y, width, height) is returned. Fails when a group is missing
    or falls outside the page."""
    page.goto(f"{base_url}/asset-groups", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    _node(page, groups[0]).wait_for(state="visible", timeout=TIMEOUT_MS)
    page.get_by_text("Hide navigation", exact=True).click()
    # Laid out again on the wider canvas; only then do collapsed groups show their counts.
    page.reload(wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    _node(page, groups[0]).wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator("button:has([aria-label=panel_show_right])").first.click()  # the asset tree beside the graph
    canvas = page.locator("svg:has(foreignObject)").first.locator("xpath=../..").bounding_box()
    x0, y0, x1, y1 = _bounds(page, groups)
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(cx, cy)  # drag the graph's middle to the canvas's: the zoom keeps the canvas's middle fixed
    page.mouse.down()
    page.mouse.move(2 * cx - (x0 + x1) / 2, 2 * cy - (y0 + y1) / 2, steps=10)
    page.mouse.up()
    zoom_in = page.locator("button:has([aria-label=zoom_in])")
    for _ in range(ZOOM_STEPS):
        zoom_in.click()
        time.sleep(0.4)  # the zoom animates
    _wait_for_statuses(page, groups)
    time.sleep(0.5)
    x0, y0, x1, y1 = _bounds(page, groups)
    clip = {
        "x": x0 - PADDING_PX,
        "y": y0 - PADDING_PX,
        "width": x1 - x0 + 2 * PADDING_PX,
        "height": y1 - y0 + 2 * PADDING_PX,
    }
    inside = (
        clip["x"] >= canvas["x"]
        and clip["y"] >= canvas["y"]
        and clip["x"] + clip["width"] <= canvas["x"] + canvas["width"]
        and clip["y"] + clip["height"] <= canvas["y"] + canvas["height"]
    )
    if not inside:
        raise RuntimeError(f"the graph {clip} does not fit the canvas {canvas}: lower ZOOM_STEPS")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), clip=clip)
    return clip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path("examples/demo"), help="a materialized project")
    parser.add_argument("--out", type=Path, default=Path("docs/lineage.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--scale", type=float, default=2.0, help="device pixels per CSS pixel (2: sharp when shrunk)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with mixtrain_ui(args.project.resolve(), "--no-automation") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000}, device_scale_factor=args.scale)
        page.add_init_script(COMMUNITY_PROMPT_SEEN)
        clip = save_lineage(page, url, args.out)
        browser.close()
    width, height = clip["width"] * args.scale, clip["height"] * args.scale
    print(f"{args.out}: {width:.0f}x{height:.0f} px, {args.out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
