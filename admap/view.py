"""Stage 8, view: the data map as one self-contained, interactive HTML page.

The page draws mean against variance with WebGL (a 2D-canvas fallback where WebGL is missing),
the region thresholds, a hover preview and a detail panel with every response, box and lasso
selection exported as JSONL of instruction ids (with the `admap select` command lines that read the
export back), and a text search; where `admap neighbours` has run, a second panel beside it lays the
instructions out by meaning (its ``layout.parquet``), with the same colourings and one selection for
both. Its HTML, CSS and JavaScript
are package data (``admap/view_assets/``), inlined at write time: no CDN, no network, offline.

The data goes into the page as one JSON block, columnar (one array per field) so that 100k
instructions stay small and parse fast. Dataset text is hostile: the JSON escapes ``<``, ``>``
and ``&`` (so ``</script>`` in a response cannot close the block), the page only ever inserts
data with ``textContent``, and a Content-Security-Policy allows no script but the page's own
(by hash) and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from admap import __version__
from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGION_LABELS, UNMAPPED
from admap.dynamics import DYNAMICS_REGION_LABELS, DYNAMICS_REGIONS, instruction_dynamics
from admap.plot import DYNAMICS_REGION_COLOURS, REGION_COLOURS, dataset_label
from admap.run_folder import Neighbourhoods, run_label

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
REGION_ORDER = (HIGH_MEAN, LOW_MEAN, HIGH_VARIANCE, UNMAPPED)
REGION_PALETTE = {**REGION_COLOURS, UNMAPPED: "#b0b0b0"}
# Tableau 10, without its grey: the grey is kept for "other" and missing values.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
OTHER, OTHER_COLOUR = "other", "#bab0ac"
SUSPECT_PALETTE = {"suspect pair": "#d62728", "pairs agree": "#8fb3d9", "no scored pairs": "#d0d0d0"}
NEAR_DUPLICATE_PALETTE = {
    "near duplicate (left out by --drop-near-duplicates)": "#d62728",
    "kept one of a near-duplicate group": "#ff9f40",
    "no near duplicate": "#d0d0d0",
}
CLEAN = "not contaminated"
NO_DYNAMICS = "no trained pairs"
DYNAMICS_PALETTE = {
    **{DYNAMICS_REGION_LABELS[region]: DYNAMICS_REGION_COLOURS[region] for region in DYNAMICS_REGIONS},
    NO_DYNAMICS: "#d0d0d0",
}
# Map columns that name where an instruction came from (UltraFeedback's `source`), when a loader keeps one.
SOURCE_COLUMNS = ("source", "dataset_source")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


@dataclass(frozen=True)
class OtherRun:
    """Another scorer's regions for the same instructions, to colour the map by."""

    label: str
    regions: pd.Series  # region by instruction_id


def text_limit(lengths: Sequence[int] | np.ndarray, budget: int) -> int | None:
    """The largest per-text cap whose capped total fits ``budget`` characters, so that only the
    longest texts are shortened; None when everything fits whole or ``budget`` is 0 (no limit)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if budget <= 0 or int(lengths.sum()) <= budget:
        return None
    low, high = 0, int(lengths.max())  # total(low) <= budget < total(high)
    while high - low > 1:
        middle = (low + high) // 2
        if int(np.minimum(lengths, middle).sum()) <= budget:
            low = middle
        else:
            high = middle
    return low


def shorten(text: str | None, limit: int | None) -> str | None:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if text is None or limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters]"


def text_lengths(values: pd.Series) -> np.ndarray:
    """The length of each string in ``values`` (other values skipped); an Arrow text column is measured
    in Arrow, without a Python string per text."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.str.len().dropna().to_numpy(dtype=np.int64)
    return np.fromiter((len(t) for t in values if isinstance(t, str)), dtype=np.int64)


def shortened(values: pd.Series, limit: int | None) -> list[str | None]:
    """`shorten` of each of `strings` (``values``); an Arrow text column is cut in Arrow first, so that
    only the shortened texts become Python strings."""
    if limit is None or not isinstance(values.dtype, pd.StringDtype):
        return [shorten(t, limit) for t in strings(values)]
    heads = values.str.slice(0, limit)
    return [
        None if is_missing(head) else head if length <= limit else f"{head}… [{int(length) - limit:,} more characters]"
        for head, length in zip(heads, values.str.len())
    ]


def numbers(values) -> list[float | None]:
    """Floats rounded to 6 significant digits (a smaller page, the same picture); NaN and None as null."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in pd.Series(values, dtype="float64").tolist()]


def is_missing(value) -> bool:
    """None, pandas' NA or a float NaN (a text column read back from parquet holds any of them)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def strings(values) -> list[str | None]:
    """Strings, with missing values as null."""
    return [None if is_missing(value) else str(value) for value in values]


def categorical(
    key: str, label: str, values: Sequence, *, colours: dict[str, str] | None = None, limit: int = len(PALETTE)
) -> dict:
    """A colouring by category: ``names``, ``colours`` and one code per instruction. With fixed
    ``colours`` their order is kept; otherwise the ``limit`` most frequent values get a colour each
    and the rest share ``other``."""
    values = ["missing" if is_missing(v) else str(v) for v in values]
    if colours is not None:
        names = list(colours) + sorted(set(values) - set(colours))
        palette = [colours.get(name, OTHER_COLOUR) for name in names]
    else:
        counts = pd.Series(values, dtype=object).value_counts(sort=False)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        names = [name for name, _ in ranked[:limit]]
        palette = list(PALETTE[: len(names)])
        if len(ranked) > limit:
            names.append(OTHER)
            palette.append(OTHER_COLOUR)
    index = {name: i for i, name in enumerate(names)}
    fallback = index.get(OTHER, 0)
    return {
        "key": key,
        "label": label,
        "kind": "category",
        "names": names,
        "colours": palette,
        "codes": [index.get(v, fallback) for v in values],
    }


def continuous(key: str, label: str, values) -> dict:
    """A colouring by a number (null where missing), with its range."""
    series = pd.Series(values, dtype="float64")
    finite = series[np.isfinite(series)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    return {"key": key, "label": label, "kind": "continuous", "values": numbers(series), "min": low, "max": high}


def region_name(region) -> str:
    """A region as the legend names it: ``high_mean — aligned``."""
    return f"{region} — {REGION_LABELS[region]}" if region in REGION_LABELS else str(region)


def region_colouring(key: str, label: str, regions: Sequence) -> dict:
    """A colouring by region with the map's own colours; ``unmapped`` is listed only when present."""
    present = set(regions)
    colours = {region_name(r): REGION_PALETTE[r] for r in REGION_ORDER if r != UNMAPPED or r in present}
    return categorical(key, label, [region_name(r) for r in regions], colours=colours)


def suspect_flags(ids: Sequence[str], suspects: pd.DataFrame) -> list[str]:
    """Per instruction: ``suspect pair`` when the scores contradict one of its annotated pairs,
    ``pairs agree`` when they order every scored pair as annotated, else ``no scored pairs``."""
    scored = suspects[suspects["margin"].notna()]
    with_suspect = set(scored.loc[scored["is_suspect"].astype(bool), "instruction_id"])
    with_pairs = set(scored["instruction_id"])
    return [
        "suspect pair" if i in with_suspect else "pairs agree" if i in with_pairs else "no scored pairs" for i in ids
    ]


def top_models(ids: Sequence[str], responses: pd.DataFrame) -> list[str | None]:
    """Per instruction, the model of its best-scored response (the first one on ties), None if it has none."""
    # Only the three columns are sorted: sorting the table would copy every response's text.
    columns = responses[["instruction_id", "alignment_score"]]
    ranked = columns.assign(_model=responses["model"].fillna("unknown model")).sort_values(
        ["instruction_id", "alignment_score"], ascending=[True, False], na_position="last", kind="mergesort"
    )
    best = ranked.drop_duplicates("instruction_id").set_index("instruction_id")["_model"]
    return [best.get(i) for i in ids]


def sample_instructions(map_table: pd.DataFrame, max_points: int | None, seed: int) -> pd.DataFrame:
    """All instructions, or a seeded random ``max_points`` of them in their original order."""
    if not max_points or len(map_table) <= max_points:
        return map_table.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(map_table), size=max_points, replace=False))
    return map_table.iloc[keep].reset_index(drop=True)


def group_responses(ids: Sequence[str], responses: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """The responses of ``ids`` ordered by instruction (input order within one), and each
    instruction's first row: instruction ``i`` owns rows ``start[i]`` to ``start[i + 1]``."""
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    codes = responses["instruction_id"].map(position)
    kept = responses.assign(_position=codes)
    if not (codes.notna().all() and codes.is_monotonic_increasing):  # else sorting would copy every text as it is
        kept = kept.dropna(subset=["_position"]).sort_values("_position", kind="mergesort")
    kept = kept.reset_index(drop=True)
    counts = np.bincount(kept["_position"].astype(np.int64), minlength=len(ids))
    return kept, [0, *np.cumsum(counts).tolist()]


def colourings(
    table: pd.DataFrame, responses: pd.DataFrame, suspects: pd.DataFrame | None, others: Sequence[OtherRun]
) -> list[dict]:
    """Every way the page can colour the map, the run's regions first."""
    ids = table["instruction_id"].tolist()
    modes = [region_colouring("region", "region", table["region"].tolist())]
    for number, other in enumerate(others):
        regions = [other.regions.get(i, "not in that run") for i in ids]
        modes.append(region_colouring(f"scorer_{number}", f"region by scorer {other.label}", regions))
    if suspects is not None:
        modes.append(
            categorical(
                "suspect", "suspect flag (admap diagnose)", suspect_flags(ids, suspects), colours=SUSPECT_PALETTE
            )
        )
    modes.append(categorical("model", "model of the best-scored response", top_models(ids, responses)))
    for column in SOURCE_COLUMNS:
        # Every loader writes the column; only some datasets (UltraFeedback) fill it.
        if column in table.columns and table[column].notna().any():
            modes.append(categorical("source", f"dataset source ({column})", table[column].tolist()))
            break
    if table["mean_rating"].notna().any():
        modes.append(continuous("mean_rating", "mean rating (the dataset's labels)", table["mean_rating"]))
    return modes


def neighbourhood_colourings(ids: Sequence[str], neighbourhoods: Neighbourhoods) -> list[dict]:
    """Colourings from `admap neighbours`: near-duplicate groups, and contamination by evaluation set."""
    kept = dict(zip(neighbourhoods.near_duplicates["instruction_id"], neighbourhoods.near_duplicates["is_kept"]))
    names = list(NEAR_DUPLICATE_PALETTE)
    duplicate = [names[2] if i not in kept else names[1] if kept[i] else names[0] for i in ids]
    flagged = neighbourhoods.contamination[neighbourhoods.contamination["is_contaminated"]]
    matched = flagged.set_index("instruction_id")["eval_set"]
    contaminated = [f"contaminated: {matched[i]}" if i in matched.index else CLEAN for i in ids]
    return [
        categorical("near_duplicate", "near duplicates (admap neighbours)", duplicate, colours=NEAR_DUPLICATE_PALETTE),
        categorical(
            "contamination",
            "contamination with evaluation prompts (admap neighbours)",
            contaminated,
            colours={CLEAN: "#d0d0d0", **{f"contaminated: {n}": "#d62728" for n in sorted(set(matched))}},
        ),
    ]


def semantic_coordinates(ids: Sequence[str], neighbourhoods: Neighbourhoods | None) -> dict | None:
    """The semantic view's ``x``/``y`` per instruction (None where the layout lacks one) and what made it."""
    if neighbourhoods is None or neighbourhoods.layout is None:
        return None
    layout = neighbourhoods.layout.set_index("instruction_id")
    record = neighbourhoods.summary.get("layout", {})
    return {
        "x": numbers(layout["semantic_x"].reindex(list(ids))),
        "y": numbers(layout["semantic_y"].reindex(list(ids))),
        "method": record.get("method"),
        "neighbourhood_kept": finite_or_none(record.get("neighbourhood_kept")),
        "model": neighbourhoods.summary.get("model"),
    }


def dynamics_by_instruction(ids: Sequence[str], pairs: pd.DataFrame) -> pd.DataFrame:
    """`instruction_dynamics` of ``pairs`` (`admap.dynamics.pair_dynamics`) in the order of ``ids``, NaN where an
    instruction has no trained pair; refused when none of ``ids`` has one (margins of another dataset)."""
    table = instruction_dynamics(pairs)
    aligned = table.set_index(table["instruction_id"].astype(str)).reindex(list(ids))
    if aligned["confidence"].isna().all():
        raise ValueError(
            f"none of the {len(ids)} instructions shown has training dynamics: the pair margins name "
            f"{len(table)} other instructions (a DPO run on pairs of another map?)"
        )
    return aligned


def dynamics_coordinates(instructions: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """The training-dynamics view: per instruction (`dynamics_by_instruction`) the mean ``variability`` (x),
    ``confidence`` (y) and ``correctness`` of its pairs and their count, and what the view summarises."""
    return {
        "x": numbers(instructions["variability"]),
        "y": numbers(instructions["confidence"]),
        "correctness": numbers(instructions["correctness"]),
        "n_pairs": [0 if is_missing(n) else int(n) for n in instructions["n_pairs"]],
        "pairs": int(len(pairs)),
        "points": int(pairs["n_points"].max()),
        "instructions": int(instructions["confidence"].notna().sum()),
    }


def dynamics_colourings(instructions: pd.DataFrame) -> list[dict]:
    """Colourings from the training dynamics (`dynamics_by_instruction`): each instruction's region (the one
    most of its pairs are in) and its pairs' mean confidence."""
    regions = [NO_DYNAMICS if is_missing(r) else DYNAMICS_REGION_LABELS[r] for r in instructions["region"]]
    return [
        categorical(
            "dynamics_region", "training-dynamics region (most of its pairs)", regions, colours=DYNAMICS_PALETTE
        ),
        continuous("dynamics_confidence", "DPO confidence: mean σ(margin) of its pairs", instructions["confidence"]),
    ]


def suspect_pairs(ids: Sequence[str], suspects: pd.DataFrame) -> dict[str, list]:
    """The pairs the scores contradict, with the index of their instruction in the page."""
    position = {instruction_id: i for i, instruction_id in enumerate(ids)}
    flagged = suspects[suspects["is_suspect"].astype(bool) & suspects["instruction_id"].isin(position)]
    return {
        "instruction": [position[i] for i in flagged["instruction_id"]],
        "chosen": flagged["chosen_id"].astype(str).tolist(),
        "rejected": flagged["rejected_id"].astype(str).tolist(),
        "margin": numbers(flagged["margin"]),
        "suspicion": numbers(flagged["suspicion_score"]),
    }


def finite_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def build_payload(
    map_table: pd.DataFrame,
    responses: pd.DataFrame,
    summary: dict,
    *,
    suspects: pd.DataFrame | None = None,
    others: Sequence[OtherRun] = (),
    neighbourhoods: Neighbourhoods | None = None,
    dynamics: pd.DataFrame | None = None,
    max_points: int | None = 100_000,
    seed: int = 42,
    text_budget: int = 40_000_000,
    name: str = "admap",
    run_dir: str | None = None,
) -> dict:
    """The page's data: ``meta`` (titles, counts, thresholds), ``instructions`` and ``responses``
    (columnar; instruction ``i``'s responses are rows ``start[i]`` to ``start[i + 1]``), the
    ``colourings``, the suspect pairs and, where `admap neighbours` ran (``neighbourhoods``), the
    ``semantic`` view's coordinates with its near-duplicate and contamination colourings and, given a DPO
    run's training dynamics (``dynamics``: `admap.dynamics.pair_dynamics` of its pair margins), the
    ``dynamics`` view's coordinates with its region and confidence colourings. Texts are shortened only
    beyond ``text_budget`` characters.
    ``name`` names the export's file; ``run_dir``, the run folder as the command that wrote the page was
    given it (``name`` when None), goes into the `admap select` command lines the page shows."""
    table = sample_instructions(map_table, max_points, seed)
    ids = table["instruction_id"].astype(str).tolist()
    grouped, start = group_responses(ids, responses)
    proxies = table["proxy_response"] if "proxy_response" in table.columns else pd.Series([None] * len(table))
    lengths = np.concatenate(
        [text_lengths(table["instruction"]), text_lengths(proxies), text_lengths(grouped["response"])]
    )
    limit = text_limit(lengths, text_budget)
    thresholds = summary.get("thresholds", {})
    mapped = table["is_mapped"].astype(bool)
    by_instruction = dynamics_by_instruction(ids, dynamics) if dynamics is not None else None
    return {
        "version": PAYLOAD_VERSION,
        "meta": {
            "title": f"Alignment Data Map — {dataset_label(summary)}",
            "name": name,
            "run_dir": run_dir if run_dir is not None else name,
            "scorer": run_label(summary),
            "region_method": thresholds.get("method"),
            "thresholds": {key: finite_or_none(thresholds.get(key)) for key in ("variance", "mean")},
            "instructions_total": int(len(map_table)),
            "instructions_shown": int(len(table)),
            "on_map": int(mapped.sum()),
            "responses": int(len(grouped)),
            "seed": seed if len(table) < len(map_table) else None,
            "text_limit": limit,
            "texts_shortened": int((lengths > limit).sum()) if limit is not None else 0,
            "created": summary.get("created"),
            "admap_version": __version__,
            "diagnosed": suspects is not None,
        },
        "instructions": {
            "id": ids,
            "text": shortened(table["instruction"], limit),
            "x": numbers(table["score_variance"].where(mapped)),
            "y": numbers(table["mean_score"].where(mapped)),
            "std": numbers(table["score_std"]),
            "region": strings(table["region"]),
            "n_responses": table["n_responses"].astype(int).tolist(),
            "mean_rating": numbers(table["mean_rating"]),
            "proxy": shortened(proxies, limit),
            "unmapped_reason": strings(table["unmapped_reason"]),
        },
        "responses": {
            "start": start,
            "id": grouped["response_id"].astype(str).tolist(),
            "text": shortened(grouped["response"], limit),
            "model": strings(grouped["model"]),
            "score": numbers(grouped["alignment_score"]),
            "rating": numbers(grouped["rating"]),
            "chars": grouped["response_chars"].astype(int).tolist(),
            "words": grouped["response_words"].astype(int).tolist(),
        },
        "colourings": colourings(table, grouped, suspects, others)
        + (neighbourhood_colourings(ids, neighbourhoods) if neighbourhoods is not None else [])
        + (dynamics_colourings(by_instruction) if by_instruction is not None else []),
        "suspects": suspect_pairs(ids, suspects) if suspects is not None else None,
        "semantic": semantic_coordinates(ids, neighbourhoods),
        "dynamics": dynamics_coordinates(by_instruction, dynamics) if by_instruction is not None else None,
    }


def embedded_json_parts(payload: dict) -> Iterator[str]:
    """``payload`` as JSON that is safe inside a ``<script>`` element, in parts (each of the payload's
    columns one): no ``<``, ``>`` or ``&`` at all, so no text can end the element or open a comment;
    NaN is refused (JSON.parse rejects it). Joined, the parts are ``json.dumps(payload)``'s compact text."""
    for part in _json_parts(payload, depth=2):
        yield re.sub(r"[<>&]", lambda match: _JSON_ESCAPES[match.group(0)], part)


def _json_parts(value, *, depth: int) -> Iterator[str]:
    if depth and isinstance(value, dict):
        for position, (key, item) in enumerate(value.items()):
            yield ("{" if position == 0 else ",") + json.dumps(str(key), ensure_ascii=False) + ":"
            yield from _json_parts(item, depth=depth - 1)
        yield "}" if value else "{}"
    else:
        yield json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def embed_json(payload: dict) -> str:
    """`embedded_json_parts` joined."""
    return "".join(embedded_json_parts(payload))


def read_asset(name: str) -> str:
    return (resources.files("admap") / "view_assets" / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script: str, style: str) -> str:
    """No network, and no script or style but the page's own (by hash): even an injected element could not run."""
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; "
        "img-src data: blob:; base-uri 'none'; form-action 'none'"
    )


def html_parts(payload: dict) -> Iterator[str]:
    """The page in parts: the template with its style, script and data inlined. Written part by part, a
    large page is never held whole, nor its data as one string."""
    template, style, script = read_asset("view.html"), read_asset("view.css"), read_asset("view.js")
    for asset, closing in ((style, "</style"), (script, "</script")):
        if closing in asset.lower():
            raise ValueError(f"admap/view_assets: an asset contains {closing!r}, which would end its element early")
    parts = {
        "TITLE": html.escape(payload["meta"]["title"]),
        # The policy holds only keywords and base64 hashes: single quotes, never a double quote.
        "CSP": html.escape(content_security_policy(script, style), quote=False),
        "STYLE": style,
        "SCRIPT": script,
    }
    # The template's text and its markers alternate; only the template's markers are substituted, never one
    # inside the data.
    for position, text in enumerate(re.split(r"@@ADMAP_([A-Z]+)@@", template)):
        if position % 2 == 0:
            yield text
        elif text == "DATA":
            yield from embedded_json_parts(payload)
        else:
            yield parts[text]


def render_html(payload: dict) -> str:
    """The page as one string (`html_parts` joined)."""
    return "".join(html_parts(payload))


def write_view(payload: dict, path: str | Path) -> Path:
    """Write the page to ``path`` atomically, part by part; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    with staging.open("w", encoding="utf-8") as handle:
        handle.writelines(html_parts(payload))
    os.replace(staging, path)
    logger.info("%s: %d instructions, %.1f MB", path, payload["meta"]["instructions_shown"], path.stat().st_size / 1e6)
    return path


class _PageHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET`` and ``HEAD`` with the page; other methods get http.server's 501."""

    server: PageServer
    # Refusals carry a status line and a short plain-text reason, nothing a browser would render or sniff.
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def do_GET(self) -> None:
        self._send_page(with_body=True)

    def do_HEAD(self) -> None:
        self._send_page(with_body=False)

    def _send_page(self, *, with_body: bool) -> None:
        # A DNS-rebinding page reaches this port under its own domain name; only loopback names are answered.
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].lower() not in self.server.allowed_hosts:
            allowed = " or ".join(sorted(self.server.allowed_hosts))
            logger.warning("refused a request with Host %s: only %s are answered", hosts, allowed)
            self.send_error(HTTPStatus.FORBIDDEN, "Host not allowed")
            return
        # The path is compared, never resolved: nothing but the page can be named.
        if unquote(self.path.partition("?")[0]) not in self.server.page_paths:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.send_header("X-Content-Type-Options", "nosniff")
        # Every `admap view` writes a new page at the same address.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(self.server.page)

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class PageServer(http.server.ThreadingHTTPServer):
    """Serves one page, and nothing else, on 127.0.0.1: ``page`` at ``/`` and ``/<name>``, to requests whose
    Host is ``127.0.0.1:PORT`` or ``localhost:PORT``; every other path is 404, a foreign Host 403."""

    def __init__(self, page: bytes, name: str, port: int):
        self.page = page
        self.page_paths = frozenset({"/", f"/{name}"})
        super().__init__(("127.0.0.1", port), _PageHandler)
        bound_port = self.server_address[1]
        # Browsers leave the default port out of Host.
        suffixes = (f":{bound_port}", "") if bound_port == 80 else (f":{bound_port}",)
        self.allowed_hosts = frozenset(host + suffix for host in ("127.0.0.1", "localhost") for suffix in suffixes)


def make_server(path: str | Path, port: int) -> PageServer:
    """A server for the page at ``path`` on 127.0.0.1 (``port`` 0: any free port), not yet serving. The page is
    read now, once: the folder around it is never looked at."""
    path = Path(path)
    return PageServer(path.read_bytes(), path.name, port)


def serve(path: str | Path, port: int) -> None:
    """Serve the page at ``path`` on 127.0.0.1 until interrupted (Ctrl-C)."""
    with make_server(path, port) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/{quote(Path(path).name)}"
        logger.info("serving %s (Ctrl-C to stop)", url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("stopped serving %s", path)
