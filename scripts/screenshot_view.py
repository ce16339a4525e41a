"""Save a screenshot of a run's interactive map (``view.html``) for the README, in headless Chromium.

    HF_HUB_OFFLINE=1 admap map --out /tmp/viewdemo && admap diagnose /tmp/viewdemo && admap view /tmp/viewdemo
    python scripts/screenshot_view.py /tmp/viewdemo --out results/view_demo.png

Hovers the first high-variance instruction and opens the detail of the best-scored high-mean one, so
that the picture shows the preview and the panel. Needs Playwright (`pip install playwright`) and a
Chromium (Debian's `/usr/bin/chromium` by default; Playwright's own download is not used).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

# Run as a script, this folder is on sys.path and the repository, which holds the `scripts` package, is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from admap.view import read_page  # noqa: E402
from scripts.chromium import CHROMIUM_ARGS  # noqa: E402

logger = logging.getLogger("screenshot_view")


def chromium_path() -> str:
    return os.environ.get("ADMAP_CHROMIUM", "/usr/bin/chromium")


def instruction_to_show(payload: dict, region: str) -> int:
    """The index of the page's first instruction in ``region`` that is on the map (-1 if none)."""
    mode = next(m for m in payload["colourings"] if m["key"] == "region")
    names = [name.split(" ")[0] for name in mode["names"]]
    on_map = np.isfinite(payload["instructions"]["x"])
    found = np.flatnonzero((np.asarray(names)[mode["codes"]] == region) & on_map)
    return int(found[0]) if len(found) else -1


def screenshot(view: Path, out: Path, *, width: int, height: int) -> Path:
    """Open ``view`` and save the screenshot to ``out``."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(view.resolve().as_uri())
        page.wait_for_selector("html[data-ready=true]", state="attached")
        payload = read_page(view)
        opened = instruction_to_show(payload, "high_mean")
        hovered = instruction_to_show(payload, "high_variance")
        if opened >= 0:
            point = page.evaluate("(i) => window.admapView.project(i)", opened)
            page.mouse.click(point["x"], point["y"])
            page.wait_for_selector("#detail:not([hidden])")
        if hovered >= 0:
            point = page.evaluate("(i) => window.admapView.project(i)", hovered)
            page.mouse.move(point["x"], point["y"])
            page.wait_for_selector("#tooltip:not([hidden])")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    logger.info("wrote %s", out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory with view.html (admap map, or admap view)")
    parser.add_argument("--out", type=Path, default=Path("results/view_demo.png"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    view = args.run_dir / "view.html"
    if not view.exists():
        parser.error(f"{view} not found: run `admap view {args.run_dir}` first")
    screenshot(view, args.out, width=args.width, height=args.height)


if __name__ == "__main__":
    main()
