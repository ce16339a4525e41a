"""admap view in real headless Chromium (Debian's `chromium`, driven by Playwright): a page of 100k
instructions becomes interactive in time; hovering, clicking, box and lasso selection and search do
what they say; hostile dataset text runs nothing; the page asks the network for nothing.

The runs are written directly (map.parquet, scores.parquet, summary.json): no model is loaded.
"""

import json
import logging
import os
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from admap.cli import main
from admap.commands.select import summary_path
from admap.commands.view import ViewConfig, run_view
from scripts.chromium import CHROMIUM_ARGS
from tests.runs import map_without_models

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright (setup.sh)")
expect = sync_api.expect

logger = logging.getLogger(__name__)

VIEWPORT = {"width": 1280, "height": 800}
# Measured 100k-instruction page: see test_100k_points_become_interactive_in_time. The bound is generous
# on purpose: CI machines are shared and slow; a regression to "unusable" is what it catches.
INTERACTIVE_WITHIN_S = 15.0

N_BIG = 100_000
NEEDLE = 12_345  # alone in the map's lower right corner
NEEDLE_TEXT = "NEEDLE: how many legs does a heron stand on?"
CLUSTER = range(1_000, 1_200)  # alone in the upper right, inside variance 0.30-0.32, mean 0.90-0.95
ZEBRAS = range(17, N_BIG, 5_000)  # the instructions that mention a zebra
HOSTILE = (
    "</script><script>window.__pwned = 1; alert(1)</script>",
    '<img src=x onerror="window.__pwned = 2; alert(2)">',
    '<svg onload="window.__pwned = 3; alert(3)"></svg><style>body { display: none }</style>',
    '<iframe src="javascript:alert(4)"></iframe><a href="javascript:alert(5)">click</a>',
)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ADMAP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def instruction_id(k: int) -> str:
    return f"i{k:06d}"


def write_run(run_dir: Path, variance, mean, texts, responses_per_instruction: int, response_text) -> Path:
    """A run directory as `admap map` leaves it, from the statistics and texts given."""
    run_dir.mkdir(parents=True)
    n = len(texts)
    mapped = ~np.isnan(variance)
    region = np.where(variance > 0.2, "high_variance", np.where(mean >= 0.6, "high_mean", "low_mean"))
    ids = [instruction_id(k) for k in range(n)]
    pd.DataFrame(
        {
            "instruction_id": ids,
            "instruction": texts,
            "proxy_response": [f"proxy answer {k}" for k in range(n)],
            "n_responses": responses_per_instruction,
            "n_scored": np.where(mapped, responses_per_instruction, 1),
            "mean_score": mean,
            "score_variance": variance,
            "score_std": np.sqrt(variance),
            "is_mapped": mapped,
            "region": np.where(mapped, region, "unmapped"),
            "mean_rating": 3.0,
            "unmapped_reason": np.where(mapped, None, "only 1 scored response(s)"),
        }
    ).to_parquet(run_dir / "map.parquet", index=False)
    k = np.repeat(np.arange(n), responses_per_instruction)
    j = np.tile(np.arange(responses_per_instruction), n)
    texts = [response_text(a, b) for a, b in zip(k.tolist(), j.tolist())]
    scores = pd.DataFrame(
        {
            "instruction_id": [ids[a] for a in k],
            "response_id": [f"{ids[a]}-{b}" for a, b in zip(k, j)],
            "response": texts,
            "model": [f"model-{(a + b) % 5}" for a, b in zip(k, j)],
            "rating": (j + 1).astype(float),
            "alignment_score": np.round(0.9 - 0.1 * j + 0.001 * (k % 7), 4),
            "response_chars": [len(t) for t in texts],
            "response_words": [len(t.split()) for t in texts],
        }
    )
    scores.to_parquet(run_dir / "scores.parquet", index=False)
    summary = {
        "created": "2025-01-01T00:00:00+00:00",
        "config": {"input": {"dataset": f"synthetic-{n}.jsonl"}},
        "scorer": {"name": "annotation", "label": "annotation"},
        "thresholds": {"method": "absolute", "variance": 0.2, "mean": 0.6},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture(scope="module")
def big_view(tmp_path_factory) -> Path:
    """100k instructions (2 responses each); 50 are unmapped; the needle and the cluster stand apart."""
    rng = np.random.default_rng(0)
    variance = np.clip(rng.gamma(2.0, 0.03, N_BIG), 0.0, 0.25)
    mean = np.clip(rng.normal(0.6, 0.08, N_BIG), 0.2, 0.85)
    cluster = np.array(CLUSTER)
    variance[cluster] = rng.uniform(0.30, 0.32, len(cluster))
    mean[cluster] = rng.uniform(0.90, 0.95, len(cluster))
    variance[NEEDLE], mean[NEEDLE] = 0.6, 0.05
    unmapped = np.arange(1_999, N_BIG, 2_000)
    variance[unmapped] = mean[unmapped] = np.nan
    texts = [f"Synthetic instruction {k}: explain topic {k % 977} in plain words." for k in range(N_BIG)]
    for k in ZEBRAS:
        texts[k] = f"Synthetic instruction {k}: describe a zebra's stripes."
    texts[NEEDLE] = NEEDLE_TEXT
    run_dir = write_run(
        tmp_path_factory.mktemp("big") / "run", variance, mean, texts, 2, lambda k, j: f"Answer {j} to {k}."
    )
    start = time.perf_counter()
    page = run_view(ViewConfig(run_dir=str(run_dir)))
    logger.warning("100k page: built in %.1f s, %.1f MB", time.perf_counter() - start, page.stat().st_size / 1e6)
    return page


@pytest.fixture(scope="module")
def hostile_view(tmp_path_factory) -> Path:
    """Twelve instructions; instruction 3 (alone at the top right) and its responses are hostile."""
    variance = np.linspace(0.01, 0.1, 12)
    mean = np.linspace(0.3, 0.7, 12)
    variance[3], mean[3] = 0.3, 0.95
    texts = [f"plain instruction {k}" for k in range(12)]
    texts[3] = HOSTILE[0] + " hostile instruction"
    run_dir = write_run(
        tmp_path_factory.mktemp("hostile") / "run",
        variance,
        mean,
        texts,
        len(HOSTILE),
        lambda k, j: HOSTILE[j] if k == 3 else f"plain response {j}",
    )
    return run_view(ViewConfig(run_dir=str(run_dir)))


@pytest.fixture(scope="module")
def playwright():
    """Playwright and the Chromium to launch; one per module (the sync API cannot nest)."""
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found (/usr/bin/chromium or $ADMAP_CHROMIUM); scripts/setup.sh installs it")
    with sync_api.sync_playwright() as playwright:
        yield playwright, path


@pytest.fixture(scope="module")
def browser(playwright):
    driver, path = playwright
    browser = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Opened:
    """A page of the view, with every dialog, page error and request it caused."""

    def __init__(self, browser, view: Path, **context):
        self.context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True, **context)
        self.page = self.context.new_page()
        self.dialogs, self.errors, self.requests = [], [], []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(view.as_uri())
        self.page.wait_for_selector("html[data-ready=true]", state="attached", timeout=120_000)

    def point(self, k: int) -> dict:
        return self.page.evaluate("(id) => window.admapView.project(window.admapView.indexOf(id))", instruction_id(k))

    def screen(self, variance: float, mean: float) -> tuple[float, float]:
        point = self.page.evaluate("([v, m]) => window.admapView.toScreen(v, m)", [variance, mean])
        return point["x"], point["y"]


@pytest.fixture
def open_view(browser):
    opened = []

    def open_(view: Path, **context) -> Opened:
        opened.append(Opened(browser, view, **context))
        return opened[-1]

    yield open_
    for view in opened:
        view.context.close()


def test_100k_points_become_interactive_in_time(browser, big_view, record_property):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    start = time.perf_counter()
    page.goto(big_view.as_uri(), timeout=120_000)
    page.wait_for_selector("html[data-ready=true]", state="attached", timeout=120_000)
    elapsed = time.perf_counter() - start
    in_page = page.evaluate("() => window.admapView.readyMs") / 1000
    state = page.evaluate("() => [window.admapView.renderer, window.admapView.count, window.admapView.onMap]")
    logger.warning("100k points: interactive %.2f s after navigation (%.2f s by the page's clock)", elapsed, in_page)
    record_property("time_to_interactive_s", round(elapsed, 2))
    context.close()
    assert state == ["webgl", N_BIG, N_BIG - 50]
    assert elapsed < INTERACTIVE_WITHIN_S


def test_hover_shows_the_instruction(open_view, big_view):
    view = open_view(big_view)
    point = view.point(NEEDLE)
    view.page.mouse.move(point["x"], point["y"])
    tooltip = view.page.locator("#tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_have_attribute("data-instruction-id", instruction_id(NEEDLE))
    expect(tooltip).to_contain_text(NEEDLE_TEXT)
    expect(tooltip).to_contain_text("high_variance")
    view.page.mouse.move(5, 5)
    expect(tooltip).to_be_hidden()


def test_click_opens_the_instruction_with_every_response(open_view, big_view):
    view = open_view(big_view)
    point = view.point(NEEDLE)
    view.page.mouse.click(point["x"], point["y"])
    detail = view.page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail).to_have_attribute("data-instruction-id", instruction_id(NEEDLE))
    expect(detail.locator("pre.instruction")).to_have_text(NEEDLE_TEXT)
    responses = detail.locator("article.response")
    # Best-scored first: response 0 scores 0.9 + 0.001 * (k % 7), response 1 scores 0.1 less.
    expected = [f"{instruction_id(NEEDLE)}-0", f"{instruction_id(NEEDLE)}-1"]
    assert [responses.nth(i).get_attribute("data-response-id") for i in range(responses.count())] == expected
    for j, response_id in enumerate(expected):
        article = detail.locator(f'article[data-response-id="{response_id}"]')
        score = round(0.9 - 0.1 * j + 0.001 * (NEEDLE % 7), 4)
        text = f"Answer {j} to {NEEDLE}."
        expect(article.locator(".response-text")).to_have_text(text)
        expect(article.locator(".response-meta")).to_contain_text(f"score {score:g}")
        expect(article.locator(".response-meta")).to_contain_text(f"rating {j + 1}")
        expect(article.locator(".response-meta")).to_contain_text(f"{len(text)} chars")
    view.page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def exported_ids(view: Opened, tmp_path: Path) -> list[str]:
    with view.page.expect_download() as download:
        view.page.click("#export")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    return [json.loads(line)["instruction_id"] for line in path.read_text().splitlines()]


def test_box_selection_exports_the_ids_inside(open_view, big_view, tmp_path):
    view = open_view(big_view)
    view.page.click("#tool-box")
    view.page.mouse.move(*view.screen(0.28, 0.97))
    view.page.mouse.down()
    view.page.mouse.move(*view.screen(0.34, 0.88), steps=8)
    view.page.mouse.up()
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(CLUSTER)} instructions selected")
    ids = exported_ids(view, tmp_path)
    assert ids == [instruction_id(k) for k in CLUSTER]
    assert view.page.evaluate("() => window.admapView.selectedIds()") == ids


def test_lasso_selects_and_shift_adds(open_view, big_view, tmp_path):
    view = open_view(big_view)
    view.page.click("#tool-lasso")
    corners = [(0.31 + 0.03 * np.cos(a), 0.925 + 0.045 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 24)]
    view.page.mouse.move(*view.screen(*corners[0]))
    view.page.mouse.down()
    for corner in corners[1:]:
        view.page.mouse.move(*view.screen(*corner), steps=2)
    view.page.mouse.up()
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(CLUSTER)} instructions selected")
    # Shift and a box around the needle add it to the lasso's selection.
    view.page.click("#tool-box")
    view.page.keyboard.down("Shift")
    view.page.mouse.move(*view.screen(0.55, 0.1))
    view.page.mouse.down()
    view.page.mouse.move(*view.screen(0.65, 0.0), steps=4)
    view.page.mouse.up()
    view.page.keyboard.up("Shift")
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(CLUSTER) + 1} instructions selected")
    assert exported_ids(view, tmp_path) == sorted([instruction_id(k) for k in CLUSTER] + [instruction_id(NEEDLE)])


def shared_word_rows(n: int) -> list[dict]:
    """Rated responses whose ROUGE-L to the proxy differs by instruction: instruction k's middle answer shares
    k % 6 of the proxy's 6 words, so its mean score is (1 + (k % 6) / 6) / 3."""
    rows = []
    for k in range(n):
        proxy = " ".join(f"w{j}x{k}" for j in range(6))
        shared = k % 6
        middle = " ".join([f"w{j}x{k}" for j in range(shared)] + [f"filler{j}x{k}" for j in range(shared, 6)])
        completions = [(proxy, 5.0), (middle, 3.0), (f"junk{k} a b c", 1.0)]
        rows.append(
            {
                "instruction": f"Question {k}?",
                "proxy": proxy,
                "completions": [{"response": text, "fine-grained_score": rating} for text, rating in completions],
            }
        )
    return rows


def test_the_select_commands_read_the_export_back(open_view, tmp_path, monkeypatch):
    """Box the upper half of a real run's map: the page's include command, run where the export is saved,
    writes exactly the selected instructions' pairs, and its exclude command the aligned region without them.
    The run folder's name needs shell quoting, and the copy button copies the command as shown."""
    run = map_without_models(shared_word_rows(18), tmp_path, name="my run's map")
    map_table = pd.read_parquet(run / "map.parquet")
    upper = set(map_table.loc[map_table["mean_score"] > 0.47, "instruction_id"])  # shares 3 or more words
    assert 0 < len(upper) < len(map_table)
    view = open_view(run / "view.html")
    view.context.grant_permissions(["clipboard-read", "clipboard-write"])
    expect(view.page.locator("#select-commands")).to_be_hidden()
    view.page.click("#tool-box")
    # Inside the plot's padding (4% of each range) all round but at the bottom, which cuts at a mean of 0.47.
    low, high = float(map_table["score_variance"].min()), float(map_table["score_variance"].max())
    top = float(map_table["mean_score"].max()) + 0.02 * float(np.ptp(map_table["mean_score"]))
    view.page.mouse.move(*view.screen(low - 0.02 * (high - low), top))
    view.page.mouse.down()
    view.page.mouse.move(*view.screen(high + 0.02 * (high - low), 0.47), steps=8)
    view.page.mouse.up()
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(upper)} instructions selected")
    expect(view.page.locator("#select-commands")).to_be_visible()

    with view.page.expect_download() as download:
        view.page.click("#export")
    name = download.value.suggested_filename
    assert name.startswith(f"my_run_s_map-selection-{len(upper)}-") and name.endswith(".jsonl")
    saved = tmp_path / "downloads" / name
    download.value.save_as(saved)
    include = view.page.locator("#command-include").text_content()
    exclude = view.page.locator("#command-exclude").text_content()
    assert shlex.split(include) == ["admap", "select", str(run), "--strategy", "full", "--include-ids", name]
    assert shlex.split(exclude) == ["admap", "select", str(run), "--exclude-ids", name]
    view.page.locator("button.copy[data-copy=command-include]").click()
    assert view.page.evaluate("() => navigator.clipboard.readText()") == include

    monkeypatch.chdir(saved.parent)
    assert main([*shlex.split(include)[1:], "--out", "included.jsonl", "--quiet"]) == 0
    pairs = [json.loads(line) for line in Path("included.jsonl").read_text().splitlines()]
    assert {pair["instruction_id"] for pair in pairs} == upper and len(pairs) == 3 * len(upper)
    summary = json.loads(summary_path(Path("included.jsonl")).read_text())
    assert summary["include_ids"]["path"] == name and summary["include_ids"]["unknown"] == 0
    assert main([*shlex.split(exclude)[1:], "--out", "excluded.jsonl", "--quiet"]) == 0
    kept = {json.loads(line)["instruction_id"] for line in Path("excluded.jsonl").read_text().splitlines()}
    assert kept == set(map_table.loc[map_table["region"] == "high_mean", "instruction_id"]) - upper


def test_search_highlights_the_matches(open_view, big_view):
    view = open_view(big_view)
    point = view.point(NEEDLE)
    clip = {"x": point["x"] - 8, "y": point["y"] - 8, "width": 16, "height": 16}
    before = view.page.screenshot(clip=clip)
    view.page.fill("#search", "heron")
    expect(view.page.locator("#search-count")).to_have_text("1 matches, 1 on the map")
    assert view.page.evaluate("() => window.admapView.matchedIds()") == [instruction_id(NEEDLE)]
    assert view.page.screenshot(clip=clip) != before  # the needle is drawn ringed now
    view.page.fill("#search", "ZEBRA")
    expect(view.page.locator("#search-count")).to_have_text(f"{len(ZEBRAS)} matches, {len(ZEBRAS)} on the map")
    assert view.page.evaluate("() => window.admapView.matchedIds()") == [instruction_id(k) for k in ZEBRAS]
    expect(view.page.locator("#results li")).to_have_count(len(ZEBRAS))
    view.page.locator("#results button").first.click()
    expect(view.page.locator("#detail")).to_have_attribute("data-instruction-id", instruction_id(ZEBRAS[0]))


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with-csp", "without-csp"])
def test_hostile_text_executes_nothing(open_view, hostile_view, bypass_csp):
    """With the page's Content-Security-Policy, and without it: textContent alone must hold."""
    view = open_view(hostile_view, bypass_csp=bypass_csp)
    point = view.point(3)
    view.page.mouse.move(point["x"], point["y"])
    expect(view.page.locator("#tooltip")).to_have_attribute("data-instruction-id", instruction_id(3))
    tooltip = view.page.locator("#tooltip").text_content()
    view.page.mouse.click(point["x"], point["y"])
    expect(view.page.locator("#detail")).to_have_attribute("data-instruction-id", instruction_id(3))
    view.page.fill("#search", "script")
    expect(view.page.locator("#search-count")).not_to_be_empty()
    view.page.wait_for_timeout(500)  # time for an injected handler or load to fire, if one existed
    # Nothing ran, nothing was injected...
    assert view.dialogs == [] and view.errors == []
    assert view.page.evaluate("() => window.__pwned") is None
    injected = "img, svg, iframe, a[href], body style, object, embed"
    assert view.page.evaluate(f"() => document.querySelectorAll('{injected}').length") == 0
    assert view.page.evaluate("() => document.scripts.length") == 2
    assert view.page.locator("main").is_visible()
    # ...and every hostile text is shown as text, verbatim.
    assert HOSTILE[0] in tooltip
    assert sorted(view.page.locator("#detail .response-text").all_text_contents()) == sorted(HOSTILE)
    expect(view.page.locator("#detail pre.instruction")).to_have_text(HOSTILE[0] + " hostile instruction")
    expect(view.page.locator("#search-count")).to_have_text("1 matches, 1 on the map")


def test_the_page_fetches_nothing(open_view, hostile_view):
    view = open_view(hostile_view)
    point = view.point(3)
    view.page.mouse.click(point["x"], point["y"])
    view.page.wait_for_timeout(300)
    assert view.requests == [hostile_view.as_uri()]


def test_without_webgl_the_page_draws_on_a_2d_canvas(playwright, hostile_view):
    driver, path = playwright
    browser = driver.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, "--disable-3d-apis"])
    try:
        view = Opened(browser, hostile_view)
        assert view.page.evaluate("() => window.admapView.renderer") == "canvas2d"
        point = view.point(3)
        view.page.mouse.click(point["x"], point["y"])
        expect(view.page.locator("#detail")).to_have_attribute("data-instruction-id", instruction_id(3))
        assert view.errors == []
    finally:
        browser.close()
