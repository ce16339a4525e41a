"""admap view in real headless Chromium (Debian's `chromium`, driven by Playwright): a page of 100k
instructions becomes interactive in time; hovering, clicking, box and lasso selection and search do
what they say; hostile dataset text runs nothing; the page asks the network for nothing; after
`admap neighbours`, the semantic view beside the map shares the map's colouring, selection and search.

The runs are written directly (map.parquet, scores.parquet, summary.json): no model is loaded, but for
the semantic view's run, which `admap neighbours` embeds with its sentence-transformers model.
"""

import io
import json
import logging
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from admap.cli import main
from admap.commands.select import summary_path
from admap.commands.view import ViewConfig, run_view
from admap.neighbours import read_prompts
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
    assert view.page.evaluate("() => document.scripts.length") == 3  # data, texts, code
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


# ---- the semantic view: a run of three topics, with a near-duplicate pair and an MT-Bench prompt copied in.
DISHES = ("banana bread", "mushroom risotto", "lentil soup", "apple pie", "chicken curry", "pancakes", "guacamole")
CODE_TASKS = (
    "reverses a linked list",
    "parses a CSV file",
    "merges two sorted arrays",
    "checks whether a string is a palindrome",
    "computes Fibonacci numbers with memoisation",
    "flattens a nested list",
    "counts the words in a text file",
)
SKIES = ("a solar eclipse", "a meteor shower", "the northern lights", "a supernova", "a lunar eclipse", "comets")
NEAR_DUPLICATES = ("Give me a recipe for banana bread.", "Give me a recipe for banana bread, please.")


def semantic_texts() -> list[str]:
    texts = [f"Give me a recipe for {dish}." for dish in DISHES]
    texts += [f"Write a Python function that {task}." for task in CODE_TASKS]
    texts += [f"Explain what causes {sky} in the night sky." for sky in SKIES]
    texts.append(NEAR_DUPLICATES[1])
    texts.append(read_prompts("mt_bench").iloc[0]["eval_prompt"])  # a verbatim copy: contaminated
    return texts


@pytest.fixture(scope="module")
def semantic_view(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """`admap map --scorer annotation`, `admap neighbours --layout pca` and `admap view` on 22 instructions:
    the page, and the layout it shows (layout.parquet)."""
    tmp_path = tmp_path_factory.mktemp("semantic")
    rows = [
        {
            "instruction": text,
            "proxy": "A helpful answer.",
            "completions": [
                {"response": f"A careful answer to question {k}.", "fine-grained_score": 5.0},
                {"response": f"A middling answer to question {k}.", "fine-grained_score": float(1 + k % 5)},
                {"response": "No.", "fine-grained_score": float(1 + k % 2)},
            ],
        }
        for k, text in enumerate(semantic_texts())
    ]
    run = map_without_models(rows, tmp_path, scorer="annotation")
    assert main(["neighbours", str(run), "--layout", "pca", "--quiet"]) == 0
    assert main(["view", str(run), "--quiet"]) == 0
    return run / "view.html", pd.read_parquet(run / "neighbours" / "layout.parquet")


def isolated(layout: pd.DataFrame) -> str:
    """The instruction farthest from any other in the semantic view (its range scaled to 1): hovering it finds it."""
    xy = layout[["semantic_x", "semantic_y"]].to_numpy()
    xy = (xy - xy.min(axis=0)) / np.ptp(xy, axis=0)
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 10
    return layout["instruction_id"].iloc[int(distances.min(axis=1).argmax())]


def panel_image(view: Opened, panel: str) -> bytes:
    return view.page.locator("#plot" if panel == "map" else "#semantic-plot").screenshot()


def coloured_pixels(png: bytes) -> int:
    """Pixels far from grey: the points (axes, text and the white ground are grey)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def drag_box(view: Opened, corner: tuple[float, float], opposite: tuple[float, float], panel: str = "map") -> None:
    where = "([x, y, p]) => window.admapView.toScreen(x, y, p)"
    start, end = (view.page.evaluate(where, [float(x), float(y), panel]) for x, y in (corner, opposite))
    view.page.mouse.move(start["x"], start["y"])
    view.page.mouse.down()
    view.page.mouse.move(end["x"], end["y"], steps=8)
    view.page.mouse.up()


def highlighted(view: Opened, panel: str) -> list[str]:
    return view.page.evaluate("(p) => window.admapView.highlightedIds(p)", panel)


def test_the_semantic_view_is_drawn_beside_the_map(open_view, semantic_view):
    page, layout = semantic_view
    view = open_view(page)
    api = view.page.evaluate("() => [window.admapView.panels, window.admapView.drawn, window.admapView.count]")
    assert api == [["map", "semantic"], {"map": len(layout), "semantic": len(layout)}, len(layout)]
    expect(view.page.locator("#semantic-panel")).to_be_visible()
    expect(view.page.locator("#map-title")).to_be_visible()
    title = view.page.locator("#semantic-title")
    expect(title).to_contain_text("semantic view — instructions by meaning (PCA of all-MiniLM-L6-v2 embeddings; ")
    expect(title).to_contain_text(re.compile(r"; \d+% of neighbourhoods kept\)$"))
    # Side by side at this width: the semantic panel is right of the map.
    boxes = [view.page.locator(selector).bounding_box() for selector in ("#plot", "#semantic-plot")]
    assert boxes[1]["x"] >= boxes[0]["x"] + boxes[0]["width"] - 1 and abs(boxes[1]["y"] - boxes[0]["y"]) < 1
    for panel in ("map", "semantic"):
        assert coloured_pixels(panel_image(view, panel)) > 20 * len(layout)  # every point a few pixels at least
    # Hover and click in the semantic view: its own tooltip, the page's detail panel.
    hovered = isolated(layout)
    text = pd.read_parquet(page.parent / "map.parquet").set_index("instruction_id").loc[hovered, "instruction"]
    point = view.page.evaluate("(id) => window.admapView.project(window.admapView.indexOf(id), 'semantic')", hovered)
    view.page.mouse.move(point["x"], point["y"])
    expect(view.page.locator("#semantic-tooltip")).to_have_attribute("data-instruction-id", hovered)
    expect(view.page.locator("#semantic-tooltip .text")).to_have_text(text)
    expect(view.page.locator("#tooltip")).to_be_hidden()
    view.page.mouse.click(point["x"], point["y"])
    expect(view.page.locator("#detail")).to_have_attribute("data-instruction-id", hovered)
    view.page.keyboard.press("Escape")
    # Narrow, the panels stack.
    view.page.set_viewport_size({"width": 900, "height": 900})
    view.page.wait_for_timeout(100)
    boxes = [view.page.locator(selector).bounding_box() for selector in ("#plot", "#semantic-plot")]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1
    assert view.errors == []


def test_a_box_in_the_semantic_view_selects_in_both_panels(open_view, semantic_view, tmp_path):
    page, layout = semantic_view
    view = open_view(page)
    # The right half of the layout, cut halfway between two points; inside the plot's padding all round.
    xs = np.sort(layout["semantic_x"].to_numpy())
    cut = float(xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
    inside = set(layout.loc[layout["semantic_x"] > cut, "instruction_id"])
    x_pad, y_pad = 0.02 * np.ptp(xs), 0.02 * np.ptp(layout["semantic_y"])
    top, bottom = layout["semantic_y"].max() + y_pad, layout["semantic_y"].min() - y_pad
    before = panel_image(view, "map")
    view.page.click("#tool-box")
    drag_box(view, (cut, top), (xs[-1] + x_pad, bottom), panel="semantic")
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(inside)} instructions selected")
    ids = view.page.evaluate("() => window.admapView.selectedIds()")
    assert set(ids) == inside and highlighted(view, "map") == ids and highlighted(view, "semantic") == ids
    assert panel_image(view, "map") != before  # the map rings them too
    assert exported_ids(view, tmp_path) == ids
    # Shift and a box in the map add to it: the union, exported as one selection.
    map_table = pd.read_parquet(page.parent / "map.parquet")
    aligned = map_table.loc[map_table["mean_score"] >= map_table["mean_score"].quantile(0.75)]
    variance, mean = map_table["score_variance"], map_table["mean_score"]
    view.page.keyboard.down("Shift")
    drag_box(
        view,
        (variance.min() - 0.02 * np.ptp(variance), mean.max() + 0.02 * np.ptp(mean)),
        (variance.max() + 0.02 * np.ptp(variance), aligned["mean_score"].min() - 1e-4),
    )
    view.page.keyboard.up("Shift")
    union = inside | set(aligned["instruction_id"])
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(union)} instructions selected")
    assert set(exported_ids(view, tmp_path)) == union and set(highlighted(view, "semantic")) == union
    # Clear clears both; the search highlights in both.
    view.page.click("#clear")
    expect(view.page.locator("#selection-count")).to_have_text("nothing selected")
    assert highlighted(view, "map") == highlighted(view, "semantic") == []
    view.page.fill("#search", "recipe")
    expect(view.page.locator("#search-count")).to_have_text(f"{len(DISHES) + 1} matches, {len(DISHES) + 1} on the map")
    matched = view.page.evaluate("() => window.admapView.matchedIds()")
    assert highlighted(view, "map") == highlighted(view, "semantic") == matched and len(matched) == len(DISHES) + 1
    assert view.errors == []


def test_zoom_is_each_panels_own_and_reset_resets_both(open_view, semantic_view):
    page, layout = semantic_view
    view = open_view(page)
    where = "([i, p]) => window.admapView.project(i, p)"
    start = {p: view.page.evaluate(where, [0, p]) for p in ("map", "semantic")}
    centre = view.page.locator("#semantic-plot").bounding_box()
    view.page.mouse.move(centre["x"] + centre["width"] / 2, centre["y"] + centre["height"] / 2)
    view.page.mouse.wheel(0, -400)
    view.page.wait_for_timeout(100)
    assert view.page.evaluate(where, [0, "semantic"]) != start["semantic"]
    assert view.page.evaluate(where, [0, "map"]) == start["map"]
    point = view.page.locator("#plot").bounding_box()
    view.page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    view.page.mouse.wheel(0, -400)
    view.page.wait_for_timeout(100)
    assert view.page.evaluate(where, [0, "map"]) != start["map"]
    view.page.click("#reset")
    assert {p: view.page.evaluate(where, [0, p]) for p in ("map", "semantic")} == start


def test_the_colouring_drives_both_panels_and_offers_the_neighbourhood_flags(open_view, semantic_view):
    page, layout = semantic_view
    view = open_view(page)
    keys = view.page.locator("#colour option").evaluate_all("(options) => options.map((o) => o.dataset.key)")
    assert {"region", "near_duplicate", "contamination"} <= set(keys)
    before = {panel: panel_image(view, panel) for panel in ("map", "semantic")}
    view.page.select_option("#colour", str(keys.index("contamination")))
    legend = view.page.locator("#legend")
    expect(view.page.locator("#legend-title")).to_have_text("contamination with evaluation prompts (admap neighbours)")
    expect(legend.locator("li", has_text="contaminated: mt_bench").locator(".count")).to_have_text("1")
    expect(legend.locator("li", has_text="not contaminated").locator(".count")).to_have_text(str(len(layout) - 1))
    for panel in ("map", "semantic"):
        assert panel_image(view, panel) != before[panel]
    view.page.select_option("#colour", str(keys.index("near_duplicate")))
    expect(legend.locator("li", has_text="left out by --drop-near-duplicates").locator(".count")).to_have_text("1")
    expect(legend.locator("li", has_text="kept one of a near-duplicate group").locator(".count")).to_have_text("1")
    groups = pd.read_parquet(page.parent / "neighbours" / "near_duplicates.parquet")
    assert set(groups["instruction_id"]) == set(layout["instruction_id"].iloc[[0, len(layout) - 2]])
    # The tooltip names the hovered instruction's flag in the colouring shown.
    view.page.select_option("#colour", str(keys.index("contamination")))
    hovered = isolated(layout)
    contaminated = pd.read_parquet(page.parent / "neighbours" / "contamination.parquet").set_index("instruction_id")
    flag = "contaminated: mt_bench" if contaminated.loc[hovered, "is_contaminated"] else "not contaminated"
    point = view.page.evaluate("(id) => window.admapView.project(window.admapView.indexOf(id), 'semantic')", hovered)
    view.page.mouse.move(point["x"], point["y"])
    tooltip = view.page.locator("#semantic-tooltip")
    expect(tooltip).to_have_attribute("data-instruction-id", hovered)
    expect(tooltip.locator(".stats")).to_contain_text(flag)
    assert view.errors == []


def test_without_neighbours_the_page_has_one_panel(open_view, hostile_view):
    view = open_view(hostile_view)
    assert view.page.evaluate("() => window.admapView.panels") == ["map"]
    expect(view.page.locator("#semantic-panel")).to_be_hidden()
    expect(view.page.locator("#map-title")).to_be_hidden()
    expect(view.page.locator("#semantic-note")).to_be_hidden()
    keys = view.page.locator("#colour option").evaluate_all("(options) => options.map((o) => o.dataset.key)")
    assert "near_duplicate" not in keys and "contamination" not in keys
    # The map fills the width the side panel leaves.
    plot = view.page.locator("#plot").bounding_box()
    aside = view.page.locator("aside").bounding_box()
    assert plot["x"] == 0 and abs(plot["x"] + plot["width"] - aside["x"]) < 1


def test_without_webgl_both_panels_draw_on_2d_canvases(playwright, semantic_view, tmp_path):
    page, layout = semantic_view
    driver, path = playwright
    browser = driver.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, "--disable-3d-apis"])
    try:
        view = Opened(browser, page)
        assert view.page.evaluate("() => window.admapView.renderers") == {"map": "canvas2d", "semantic": "canvas2d"}
        for panel in ("map", "semantic"):
            assert coloured_pixels(panel_image(view, panel)) > 20 * len(layout)
        xs = np.sort(layout["semantic_x"].to_numpy())
        cut = float(xs[-3] + xs[-2]) / 2  # the two rightmost points
        pad = 0.02 * np.ptp(layout["semantic_y"])
        view.page.click("#tool-box")
        drag_box(
            view,
            (cut, layout["semantic_y"].max() + pad),
            (xs[-1] + 0.02 * np.ptp(xs), layout["semantic_y"].min() - pad),
            panel="semantic",
        )
        expect(view.page.locator("#selection-count")).to_have_text("2 instructions selected")
        assert len(highlighted(view, "map")) == 2
        assert view.errors == []
    finally:
        browser.close()


# ---- the training-dynamics view: twelve instructions, ten of them trained on, one pair each over three points.
@pytest.fixture(scope="module")
def dynamics_view(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The page of a run given a DPO run's pair margins, and each instruction's training dynamics."""
    from admap.dynamics import instruction_dynamics, pair_dynamics

    folder = tmp_path_factory.mktemp("dynamics")
    texts = [f"plain instruction {k}" for k in range(12)]
    run_dir = write_run(
        folder / "run", np.linspace(0.01, 0.1, 12), np.linspace(0.3, 0.7, 12), texts, 2, lambda k, j: f"answer {j}"
    )
    # Instruction k's margins drift from -1 by a speed of its own; 10 and 11 were not trained on.
    margins = pd.DataFrame(
        [
            {
                "instruction_id": instruction_id(k),
                "chosen_id": f"{instruction_id(k)}-0",
                "rejected_id": f"{instruction_id(k)}-1",
                "epoch": step / 6,
                "step": step,
                "margin": -1.0 + (k - 4) * 0.4 * step / 2 + (0.8 * (-1) ** step if k % 3 == 0 else 0.0),
            }
            for k in range(10)
            for step in (2, 4, 6)
        ]
    )
    margins.to_parquet(folder / "pair_margins.parquet")
    page = run_view(ViewConfig(run_dir=str(run_dir), dynamics=str(folder / "pair_margins.parquet")))
    return page, instruction_dynamics(pair_dynamics(margins))


def test_the_training_dynamics_view_is_drawn_beside_the_map(open_view, dynamics_view, tmp_path):
    page, dynamics = dynamics_view
    view = open_view(page)
    api = view.page.evaluate("() => [window.admapView.panels, window.admapView.drawn]")
    assert api == [["map", "dynamics"], {"map": 12, "dynamics": 10}]
    for visible in ("#dynamics-panel", "#map-title", "#dynamics-note", "#panels-note"):
        expect(view.page.locator(visible)).to_be_visible()
    for hidden in ("#semantic-panel", "#semantic-note"):
        expect(view.page.locator(hidden)).to_be_hidden()
    expect(view.page.locator("#dynamics-title")).to_have_text(
        "training dynamics — instructions by their pairs' confidence and variability "
        "(10 DPO pairs over 3 recording points)"
    )
    assert coloured_pixels(view.page.locator("#dynamics-plot").screenshot()) > 20 * 10
    # Hover in the dynamics view: its tooltip names the confidence and variability.
    most_confident = dynamics.loc[dynamics["confidence"].idxmax()]
    point = view.page.evaluate(
        "(id) => window.admapView.project(window.admapView.indexOf(id), 'dynamics')", most_confident["instruction_id"]
    )
    view.page.mouse.move(point["x"], point["y"])
    tooltip = view.page.locator("#dynamics-tooltip")
    expect(tooltip).to_have_attribute("data-instruction-id", most_confident["instruction_id"])
    expect(tooltip.locator(".stats")).to_contain_text("DPO confidence")
    view.page.mouse.click(point["x"], point["y"])
    expect(view.page.locator("#detail")).to_contain_text("DPO variability")
    view.page.keyboard.press("Escape")
    # A box around the upper half of the dynamics view (by confidence) selects those instructions in the map too.
    cut = float(dynamics["confidence"].median())
    upper = dynamics[dynamics["confidence"] > cut]
    pad_x = 0.05 * np.ptp(dynamics["variability"]) + 1e-3
    view.page.click("#tool-box")
    drag_box(
        view,
        (dynamics["variability"].min() - pad_x, dynamics["confidence"].max() + 0.02),
        (dynamics["variability"].max() + pad_x, cut + 1e-6),
        panel="dynamics",
    )
    expect(view.page.locator("#selection-count")).to_have_text(f"{len(upper)} instructions selected")
    assert set(highlighted(view, "map")) == set(upper["instruction_id"]) == set(highlighted(view, "dynamics"))
    # The colourings by its regions and its confidence.
    keys = view.page.locator("#colour option").evaluate_all("(options) => options.map((o) => o.dataset.key)")
    assert {"dynamics_region", "dynamics_confidence"} <= set(keys)
    view.page.select_option("#colour", str(keys.index("dynamics_region")))
    legend = view.page.locator("#legend")
    expect(legend.locator("li", has_text="no trained pairs").locator(".count")).to_have_text("2")
    counts = dynamics["region"].value_counts()
    for region, name in (("easy", "easy to learn"), ("hard", "hard to learn"), ("ambiguous", "ambiguous")):
        if counts.get(region, 0):
            expect(legend.locator("li", has_text=name).locator(".count")).to_have_text(str(counts[region]))
    assert view.errors == []
