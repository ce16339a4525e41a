"""The interactive map at UltraFeedback scale, in headless Chromium: page sizes, first paint, hover, lasso.

Two datasets:

- 64k: synthetic raw UltraFeedback (`bench_memory.write_ultrafeedback`, 64,000 rows x 4 completions, texts of
  UltraFeedback's lengths cut from a pool of random words), mapped as a user maps it (`admap map --scorer
  annotation --generator none`, then `admap diagnose`);
- 1M: 1,000,000 instructions x 4 responses written directly as a run folder (`write_synthetic_run`: regions in
  thirds, short texts), since mapping a million rows is not what is measured here.

For each: the single-file page (`admap view`) and the served page (`admap view --serve`), their bytes; in
Chromium (Debian's `chromium`, Playwright), the first paint and the page being ready (texts inflated) after
navigation, what the map draws (points or density) and how legible each region's colour is (pixels sampled
under points well inside each region: the share whose colour is that region's, and how strongly it is drawn),
the hover handler's time over 40 points, and a lasso around about 10% of the instructions with its export.
Side by side, the peer: the static figure users share today, matplotlib's ``map.png`` (`admap.plot.plot_map`),
its build time and bytes against the page's.

    python benchmarks/bench_view.py --out results/view-scale            # 64k and 1M (about 15 min on 2 cores)
    python benchmarks/bench_view.py --sizes 64000 --out /tmp/view-64k   # one size
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import admap  # noqa: E402
from admap import view  # noqa: E402
from admap.provenance import machine_line  # noqa: E402
from benchmarks.bench_memory import WORDS, write_ultrafeedback  # noqa: E402

VIEWPORT = {"width": 1280, "height": 800}
REGIONS = ("high_mean", "low_mean", "high_variance")
HOVERS = 40
SAMPLED_PER_REGION = 300


def write_synthetic_run(
    run_dir: Path, instructions: int, responses: int = 4, *, ratings: bool = False, seed: int = 0
) -> Path:
    """A run folder as `admap map` leaves it (map.parquet, scores.parquet, summary.json), no model involved. Each
    response's score is drawn around its instruction's own level and spread; with ``ratings``, as UltraFeedback's
    annotations score them (quarter steps from 1 to 5, so that instructions pile up on a grid of positions).
    The variance threshold is the 67th percentile and the mean one the median of the rest: three regions of about
    a third each. Texts are short."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    level = rng.normal(0.55, 0.12, (instructions, 1))
    spread = rng.gamma(2.0, 0.05, (instructions, 1))
    scores = np.clip(rng.normal(level, spread, (instructions, responses)), 0.0, 1.0)
    if ratings:
        scores = np.round((1 + 4 * scores) * 4) / 4
    mean, variance = scores.mean(axis=1), scores.var(axis=1)
    variance_threshold = float(np.quantile(variance, 0.67))
    mean_threshold = float(np.median(mean[variance <= variance_threshold]))
    region = np.where(
        variance > variance_threshold, "high_variance", np.where(mean >= mean_threshold, "high_mean", "low_mean")
    )
    ids = [f"i{k:07d}" for k in range(instructions)]
    words = np.asarray(WORDS)
    topic = words[rng.integers(len(words), size=instructions)]
    pd.DataFrame(
        {
            "instruction_id": ids,
            "instruction": [
                f"Instruction {k}: explain {t} in plain words." for k, t in zip(range(instructions), topic)
            ],
            "n_responses": responses,
            "n_scored": responses,
            "mean_score": mean,
            "score_variance": variance,
            "score_std": np.sqrt(variance),
            "is_mapped": True,
            "region": region,
            "mean_rating": np.round(rng.uniform(1, 5, instructions), 2),
            "unmapped_reason": None,
        }
    ).to_parquet(run_dir / "map.parquet", index=False)
    k = np.repeat(np.arange(instructions), responses)
    j = np.tile(np.arange(responses), instructions)
    texts = [f"Answer {b} to instruction {a}: {t} is a thing." for a, b, t in zip(k.tolist(), j.tolist(), topic[k])]
    pd.DataFrame(
        {
            "instruction_id": np.asarray(ids, dtype=object)[k],
            "response_id": [f"{ids[a]}-{b}" for a, b in zip(k.tolist(), j.tolist())],
            "response": texts,
            "model": np.asarray([f"model-{m}" for m in range(8)])[(k + j) % 8],
            "rating": (j + 1).astype(float),
            "alignment_score": scores.ravel(),
            "response_chars": [len(t) for t in texts],
            "response_words": [len(t.split()) for t in texts],
        }
    ).to_parquet(run_dir / "scores.parquet", index=False)
    summary = {
        "created": "2026-01-01T00:00:00+00:00",
        "config": {"input": {"dataset": f"synthetic-{instructions}.jsonl"}},
        "scorer": {"name": "annotation", "label": "annotation"},
        "thresholds": {"method": "absolute", "variance": variance_threshold, "mean": mean_threshold},
        "regions": {name: int((region == name).sum()) for name in REGIONS},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def ultrafeedback_run(folder: Path, rows: int, seed: int = 0) -> Path:
    """Synthetic raw UltraFeedback mapped and diagnosed as a user would: `admap map --scorer annotation
    --generator none`, then `admap diagnose`."""
    folder.mkdir(parents=True, exist_ok=True)
    data, run = folder / "ultrafeedback.jsonl", folder / "run"
    if not (run / "diagnosis" / "suspects.parquet").exists():
        write_ultrafeedback(data, rows, seed=seed)
        admap = [sys.executable, "-m", "admap.cli"]
        subprocess.run(
            [*admap, "map", str(data), "--scorer", "annotation", "--generator", "none"]
            + ["--out", str(run), "--no-view", "--no-plot", "--quiet"],
            check=True,
        )
        subprocess.run([*admap, "diagnose", str(run), "--quiet"], check=True)
    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served(run: Path, *extra: str):
    """`admap view RUN --serve` in its own process, on a free loopback port: yields the page's URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "admap.cli", "view", str(run), "--serve", "--port", str(port), "--quiet", *extra]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{shlex.join(command)} did not start serving (exit {process.poll()})") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def open_page(browser, url: str, *, timeout_ms: int = 300_000):
    """A fresh page at ``url``, waited for until ready; returns (context, page)."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True)
    page = context.new_page()
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector("html[data-ready=true]", state="attached", timeout=timeout_ms)
    return context, page


def project(page, indices) -> list[dict | None]:
    return page.evaluate("(list) => list.map((i) => window.admapView.project(i))", [int(i) for i in indices])


def region_legibility(page, map_table: pd.DataFrame, seed: int = 0) -> dict[str, dict]:
    """Per region, pixels of a screenshot under up to `SAMPLED_PER_REGION` of its points, chosen well inside its
    area (farther from a boundary than a third of all points): ``share``, those whose colour is the region's
    (the nearest of the three by the direction it takes from white; white counts as a miss), and ``strength``,
    the median depth of the region's colour there (1: its colour itself; 0: white)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=np.float64)
    thresholds = page.evaluate("() => JSON.parse(document.getElementById('admap-data').textContent).meta.thresholds")
    distance = view.threshold_distance(map_table, thresholds)
    inside = distance > np.quantile(distance[np.isfinite(distance)], 1 / 3)
    directions = {region: 255 - np.array(hex_rgb(view.REGION_PALETTE[region]), dtype=np.float64) for region in REGIONS}
    rng = np.random.default_rng(seed)
    result = {}
    for region in REGIONS:
        candidates = np.flatnonzero((map_table["region"].to_numpy() == region) & inside)
        chosen = rng.choice(candidates, size=min(SAMPLED_PER_REGION, len(candidates)), replace=False)
        matches, strengths = [], []
        for point in project(page, chosen):
            x, y = int(round(point["x"])), int(round(point["y"]))
            away = 255 - pixels[y, x]
            if away.sum() < 30:  # white: nothing drawn there
                matches.append(False)
                strengths.append(0.0)
                continue
            cosine = {r: away @ d / (np.linalg.norm(away) * np.linalg.norm(d)) for r, d in directions.items()}
            matches.append(max(cosine, key=cosine.get) == region)
            strengths.append(float(away @ directions[region] / (directions[region] @ directions[region])))
        result[region] = {"share": float(np.mean(matches)), "strength": float(np.median(strengths))}
    return result


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[k : k + 2], 16) for k in (1, 3, 5))


def hover_times(page, map_table: pd.DataFrame, seed: int = 1) -> list[float]:
    """The page's hover handler time (ms) at ``HOVERS`` random points on the map."""
    chosen = np.random.default_rng(seed).choice(len(map_table), size=HOVERS, replace=False)
    times = []
    for point in project(page, chosen):
        if point is None:
            continue
        page.mouse.move(point["x"], point["y"])
        times.append(page.evaluate("() => window.admapView.timings.hoverMs"))
    page.mouse.move(2, 2)
    return times


def lasso_box(map_table: pd.DataFrame) -> tuple[tuple[float, float, float, float], int]:
    """A box in (variance, mean) around about 10% of the instructions, and how many it holds. Its edges lie halfway
    between two distinct values, never on a position (ratings put many instructions on the same ones)."""
    x, y = map_table["score_variance"].to_numpy(), map_table["mean_score"].to_numpy()

    def edge(values: np.ndarray, quantile: float) -> float:
        value = float(np.nanquantile(values, quantile))
        below = values[values < value]
        return (value + float(below.max())) / 2 if len(below) else value

    x0, x1, y0, y1 = edge(x, 0.3), edge(x, 0.6), edge(y, 0.3), edge(y, 0.63)
    inside = int(((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).sum())
    return (x0, x1, y0, y1), inside


def lasso(page, box: tuple[float, float, float, float], tmp: Path) -> dict:
    """Draw a lasso along ``box``'s edges; the selection's size, the page's time for it, and the export's."""
    x0, x1, y0, y1 = box
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    path = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:]):
        path += [(ax + (bx - ax) * t, ay + (by - ay) * t) for t in np.linspace(0, 1, 6)[:-1]]
    path.append(corners[-1])
    page.click("#tool-lasso")
    screen = [page.evaluate("([x, y]) => window.admapView.toScreen(x, y)", [float(a), float(b)]) for a, b in path]
    page.mouse.move(screen[0]["x"], screen[0]["y"])
    page.mouse.down()
    for point in screen[1:]:
        page.mouse.move(point["x"], point["y"], steps=2)
    started = time.perf_counter()
    page.mouse.up()
    page.wait_for_function("() => window.admapView.timings.selectMs !== null")
    select_ms = page.evaluate("() => window.admapView.timings.selectMs")
    selected = len(page.evaluate("() => window.admapView.selectedIds()"))
    with page.expect_download() as download:
        page.click("#export")
    saved = tmp / download.value.suggested_filename
    download.value.save_as(saved)
    exported = sum(1 for _ in saved.open())
    elapsed = time.perf_counter() - started
    return {"selected": selected, "exported": exported, "select_ms": select_ms, "select_and_export_s": elapsed}


def measure_page(browser, url: str, map_table: pd.DataFrame, tmp: Path, shot: Path | None = None) -> dict:
    """A page at ``url`` opened, its region legibility measured (and its screenshot saved to ``shot``), hovered
    and lassoed."""
    started = time.perf_counter()
    context, page = open_page(browser, url)
    wall = time.perf_counter() - started
    timing = page.evaluate("() => [window.admapView.paintedMs, window.admapView.readyMs, window.admapView.layers()]")
    legibility = region_legibility(page, map_table)
    if shot is not None:
        page.screenshot(path=shot)
    hovers = hover_times(page, map_table)
    box, inside = lasso_box(map_table)
    selection = lasso(page, box, tmp)
    context.close()
    return {
        "first_paint_s": timing[0] / 1000,
        "ready_s": timing[1] / 1000,
        "ready_wall_s": wall,
        "layer": timing[2]["map"]["layer"],
        "legibility": legibility,
        "hover_ms_median": float(np.median(hovers)),
        "hover_ms_max": float(np.max(hovers)),
        "lasso_expected": inside,
        **selection,
    }


def peer_figure(run: Path, out: Path) -> dict:
    """The peer: the static figure of the same run, matplotlib's map.png (`admap.plot`, as `admap map` writes it)."""
    started = time.perf_counter()
    admap.open_run(run).plot().savefig(out, bbox_inches="tight")
    return {"peer_s": time.perf_counter() - started, "peer_bytes": out.stat().st_size}


def view_page(run: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "admap.cli", "view", str(run), "--out", str(out), "--quiet"], check=True)
    return out


def measure_run(browser, run: Path, label: str, tmp: Path, shots: Path | None = None) -> list[dict]:
    """The single-file page and the served page of ``run``, each measured (`measure_page`, screenshots in
    ``shots``), beside the peer."""
    slug = label.lower().replace(" ", "-")

    def shot(kind: str) -> Path | None:
        return shots / f"{slug}-{kind}.png" if shots is not None else None

    map_table = pd.read_parquet(run / "map.parquet")
    peer = peer_figure(run, tmp / f"{label}.png")

    def row(kind: str, url: str, size: int, build_s: float) -> dict:
        measured = measure_page(browser, url, map_table, tmp, shot(kind.replace(" ", "-")))
        common = {"dataset": label, "instructions": len(map_table), "page": kind}
        return {**common, "bytes": size, "build_s": build_s, **measured, **peer}

    started = time.perf_counter()
    page_path = view_page(run, tmp / f"{label}.html")
    rows = [row("single file", page_path.as_uri(), page_path.stat().st_size, time.perf_counter() - started)]
    started = time.perf_counter()
    with served(run) as url:
        build_s = time.perf_counter() - started
        with urllib.request.urlopen(url) as response:
            rows.append(row("served", url, len(response.read()), build_s))
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    """One row per page, legibility flattened, with the ratios to the peer."""
    flat = []
    for row in rows:
        legibility = row.pop("legibility")
        for region, found in legibility.items():
            row[f"{region}_share"] = round(found["share"], 3)
            row[f"{region}_strength"] = round(found["strength"], 3)
        row["MB"] = round(row["bytes"] / 1e6, 2)
        row["bytes_vs_peer"] = round(row["bytes"] / row["peer_bytes"], 1)
        row["build_vs_peer"] = round(row["build_s"] / row["peer_s"], 2)
        flat.append(row)
    return pd.DataFrame(flat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64_000, 1_000_000],
        help="64000: synthetic UltraFeedback mapped and diagnosed; any other: a run written directly",
    )
    parser.add_argument("--out", help="write view-scale.csv and view-scale.md here")
    parser.add_argument("--work-dir", help="keep the runs here and reuse them (default: a temporary folder)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from scripts.chromium import CHROMIUM_ARGS

    rows = []
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as driver:
        work = Path(args.work_dir or scratch)
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for size in args.sizes:
            label = f"{size // 1000}k" if size < 1_000_000 else f"{size / 1e6:g}M"
            if size == 64_000:
                run, label = ultrafeedback_run(work / "ultrafeedback-64k", size), "UltraFeedback-shaped 64k"
            else:
                run = work / f"synthetic-{size}" / "run"
                if not (run / "scores.parquet").exists():
                    write_synthetic_run(run, size)
            shots = Path(args.out) if args.out else None
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
            rows += measure_run(browser, run, label, work, shots)
            print(table([dict(r) for r in rows[-2:]]).to_string(index=False), flush=True)
        browser.close()
    result = table(rows)
    columns = [
        "dataset",
        "instructions",
        "page",
        "MB",
        "build_s",
        "first_paint_s",
        "ready_s",
        "layer",
        "high_mean_share",
        "low_mean_share",
        "high_variance_share",
        "high_mean_strength",
        "hover_ms_median",
        "hover_ms_max",
        "lasso_expected",
        "selected",
        "select_ms",
        "select_and_export_s",
        "peer_s",
        "peer_bytes",
        "bytes_vs_peer",
        "build_vs_peer",
    ]
    print(result[columns].to_string(index=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result.to_csv(out / "view-scale.csv", index=False)
        command = "python benchmarks/bench_view.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        lines = [
            "# The interactive map at UltraFeedback scale",
            "",
            f"Command: `{command}`. Machine: {machine_line()}; Chromium headless (Debian `chromium`), viewport "
            "1280x800. Data: see the script's docstring. Peer: matplotlib's static map.png of the same run. "
            "`lasso_expected`: instructions inside the lasso's box by their float64 positions; the page selects by "
            "its own, after the pointer's positions are rounded to whole pixels.",
            "",
            result[columns].to_markdown(index=False),
            "",
        ]
        (out / "view-scale.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
