"""admap view at UltraFeedback scale, in headless Chromium: 64k instructions on a grid of ratings and a million
served ones draw every region in its own colour, strongly (pixels sampled under each region's points); zoomed in,
the density gives way to points; hover and a lasso of about 100k instructions answer; under `admap view --serve`
a suspect pair's instruction shows its texts whole where the single-file page had shortened them.

Timings are not asserted here: benchmarks/bench_view.py prints them (first paint, hover, lasso) with the pages'
sizes. The runs are written directly (benchmarks/bench_view.py `write_synthetic_run`) but for the suspect's,
which `admap map` and `admap diagnose` make from a small dataset.
"""

import json
import logging
import time

import numpy as np
import pandas as pd
import pytest

from admap import view
from admap.cli import main
from benchmarks.bench_view import (
    lasso,
    lasso_box,
    open_page,
    region_legibility,
    served,
    write_synthetic_run,
)

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright (setup.sh)")
expect = sync_api.expect

logger = logging.getLogger(__name__)

# Legible: nearly every sampled pixel in a region's area has the region's colour, drawn at least half strength.
LEGIBLE_SHARE, LEGIBLE_STRENGTH = 0.9, 0.5


def assert_legible(page, map_table: pd.DataFrame) -> None:
    legibility = region_legibility(page, map_table)
    logger.warning("region legibility: %s", legibility)
    for region, found in legibility.items():
        assert found["share"] >= LEGIBLE_SHARE, (region, found)
        assert found["strength"] >= LEGIBLE_STRENGTH, (region, found)


def test_64k_on_a_ratings_grid_is_legible_small_and_opens_into_points(browser, tmp_path, record_property):
    run = write_synthetic_run(tmp_path / "run", 64_000, ratings=True)
    map_table = pd.read_parquet(run / "map.parquet")
    positions = len(map_table[["score_variance", "mean_score"]].drop_duplicates())
    assert positions < 5_000  # the grid the ratings make: many instructions on each position
    assert main(["view", str(run), "--quiet"]) == 0
    page_path = run / "view.html"
    size = page_path.stat().st_size
    record_property("page_mb", round(size / 1e6, 2))
    logger.warning("64k page: %.1f MB", size / 1e6)
    context, page = open_page(browser, page_path.as_uri())
    try:
        assert page.evaluate("() => window.admapView.count") == 64_000
        layers = page.evaluate("() => window.admapView.layers().map")
        assert (layers["layer"], layers["visible"]) == ("density", 64_000)
        assert_legible(page, map_table)
        # Zoomed in where they are densest, the instructions in view are few enough to be drawn as points.
        middle = [float(map_table["score_variance"].median()), float(map_table["mean_score"].median())]
        centre = page.evaluate("([x, y]) => window.admapView.toScreen(x, y)", middle)
        page.mouse.move(centre["x"], centre["y"])
        for _ in range(3):
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(100)
        layers = page.evaluate("() => window.admapView.layers().map")
        assert layers["layer"] == "points" and 0 < layers["visible"] < 40_000
        # Hover answers with the instruction's own text (inflated from the page).
        page.click("#reset")
        k = int(np.flatnonzero(map_table["region"] == "high_variance")[0])
        point = page.evaluate("(i) => window.admapView.project(i)", k)
        page.mouse.move(point["x"], point["y"])
        tooltip = page.locator("#tooltip")
        expect(tooltip).to_be_visible()
        hovered = tooltip.get_attribute("data-instruction-id")
        text = map_table.set_index("instruction_id").loc[hovered, "instruction"]
        expect(tooltip.locator(".text")).to_have_text(text)
    finally:
        context.close()


def test_a_million_served_instructions_are_legible_and_answer(browser, tmp_path, record_property):
    run = write_synthetic_run(tmp_path / "run", 1_000_000)
    map_table = pd.read_parquet(run / "map.parquet")
    with served(run) as url:
        started = time.perf_counter()
        context, page = open_page(browser, url)
        record_property("ready_s", round(time.perf_counter() - started, 2))
        try:
            assert page.evaluate("() => [window.admapView.count, window.admapView.texts]") == [1_000_000, "served"]
            assert page.evaluate("() => window.admapView.layers().map.layer") == "density"
            assert_legible(page, map_table)
            # Hover fetches the instruction's text from the server.
            k = 123_457
            point = page.evaluate("(i) => window.admapView.project(i)", k)
            page.mouse.move(point["x"], point["y"])
            tooltip = page.locator("#tooltip")
            hovered = tooltip.get_attribute("data-instruction-id", timeout=10_000)
            text = map_table.set_index("instruction_id").loc[hovered, "instruction"]
            expect(tooltip.locator(".text")).to_have_text(text)
            page.mouse.move(2, 2)
            # A lasso around about a tenth of them: selected and exported, every one.
            box, inside = lasso_box(map_table)
            selection = lasso(page, box, tmp_path)
            logger.warning("1M served: lasso %s", selection)
            assert 90_000 < inside < 110_000
            assert selection["selected"] == selection["exported"]
            assert abs(selection["selected"] - inside) <= 0.002 * inside  # float32 positions on the box's edges
            # The server's search, as the page's: every match highlighted, the first listed.
            page.fill("#search", "i0999999")
            expect(page.locator("#search-count")).to_have_text("1 matches, 1 on the map")
            assert page.evaluate("() => window.admapView.matchedIds()") == ["i0999999"]
        finally:
            context.close()


def suspect_rows(n: int) -> list[dict]:
    """Rated answers scored by ROUGE-L against a proxy; in every fifth instruction the best-rated answer shares no
    word with the proxy and the worst-rated one is the proxy itself: a pair the scores contradict. Every answer is
    long (about 2,000 characters) so that a small text budget shortens it."""
    rows = []
    for k in range(n):
        proxy = " ".join(f"w{j}x{k}" for j in range(8))
        filler = " ".join(f"detail{j}of{k}" for j in range(180))
        good, bad = f"{proxy} {filler}", f"unrelated{k} {filler}"
        contradicted = k % 5 == 0
        completions = [(bad, 5.0), (good, 1.0)] if contradicted else [(good, 5.0), (bad, 1.0)]
        rows.append(
            {
                "instruction": f"Question {k}: " + " ".join(f"topic{j}of{k}" for j in range(60)),
                "proxy": proxy,
                "completions": [{"response": text, "fine-grained_score": rating} for text, rating in completions],
            }
        )
    return rows


def test_under_serve_a_suspect_pair_shows_its_texts_whole(browser, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in suspect_rows(40)))
    run = tmp_path / "run"
    argv = ["map", str(data), "--proxy-column", "proxy", "--generator", "none", "--scorer", "rouge_l"]
    assert main([*argv, "--out", str(run), "--quiet", "--no-plot", "--no-view"]) == 0
    assert main(["diagnose", str(run), "--quiet"]) == 0
    suspects = pd.read_parquet(run / "diagnosis" / "suspects.parquet")
    flagged = suspects[suspects["is_suspect"]]
    assert len(flagged) >= 5
    # A budget that keeps nothing whole: the suspect's texts are shortened in the single-file page.
    assert main(["view", str(run), "--text-budget", "4000", "--quiet"]) == 0
    payload = view.read_page(run / "view.html")
    assert payload["meta"]["instructions_whole"] == 0 and payload["meta"]["text_limit"] < 100
    suspect = flagged.sort_values("suspicion_score").iloc[0]
    index = payload["instructions"]["id"].index(suspect["instruction_id"])
    scores = pd.read_parquet(run / "scores.parquet").set_index("response_id")
    whole = {
        response_id: scores.loc[response_id, "response"]
        for response_id in (suspect["chosen_id"], suspect["rejected_id"])
    }

    def open_suspect(page) -> None:
        page.evaluate("(i) => window.admapView.open(i)", index)
        detail = page.locator("#detail")
        expect(detail).to_have_attribute("data-instruction-id", suspect["instruction_id"])
        expect(detail.locator("li.suspect")).to_contain_text(
            f"chosen {suspect['chosen_id']} over {suspect['rejected_id']}"
        )

    context, page = open_page(browser, (run / "view.html").as_uri())
    try:
        open_suspect(page)
        expect(page.locator("#detail .shortened")).to_be_visible()
        article = page.locator(f'#detail article[data-response-id="{suspect["chosen_id"]}"] .response-text')
        shown = article.text_content()
        assert shown.endswith("…") and whole[suspect["chosen_id"]].startswith(shown[:-1]) and len(shown) < 100
    finally:
        context.close()
    with served(run) as url:
        context, page = open_page(browser, url)
        try:
            open_suspect(page)
            for response_id, text in whole.items():
                article = page.locator(f'#detail article[data-response-id="{response_id}"] .response-text')
                expect(article).to_have_text(text)
            expect(page.locator("#detail pre.instruction")).to_have_text(
                pd.read_parquet(run / "map.parquet")
                .set_index("instruction_id")
                .loc[suspect["instruction_id"], "instruction"]
            )
            expect(page.locator("#detail .shortened")).to_have_count(0)
        finally:
            context.close()
