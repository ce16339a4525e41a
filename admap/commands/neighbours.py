"""`admap neighbours`: near-duplicate instructions and contamination with evaluation prompts.

Reads a finished `admap map` run, embeds its instructions and the evaluation prompts (through the
embedding cache, with the run's model), builds a FAISS index of the instructions (`admap.knn`) and
writes RUN_DIR/neighbours/: ``neighbours.parquet`` (each instruction's k nearest others),
``near_duplicates.parquet``, ``contamination.parquet``, ``instructions.faiss`` (the index, with
``index_ids.parquet``: its row order), ``layout.parquet`` (the semantic view's 2-D coordinates),
``neighbours.json`` (counts, thresholds, provenance) and
``report.md`` (the groups and the contaminated instructions, side by side with what they match).
`admap select --drop-near-duplicates --drop-contaminated` reads it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from admap import knn, layout
from admap import neighbours as stage
from admap.commands import Command
from admap.config import option, to_dict
from admap.embed import EmbeddingOptions
from admap.embedding_store import embedded_texts
from admap.provenance import provenance
from admap.run_folder import NEIGHBOURS, MapRun, writing_into

logger = logging.getLogger(__name__)


@dataclass
class NeighboursConfig:
    """`admap neighbours`: near-duplicate instructions and contamination with evaluation prompts."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    k: int = option(10, "nearest other instructions kept per instruction (neighbours.parquet)")
    near_duplicate_threshold: float = option(
        0.92, "cosine at which two instructions are near duplicates (linked into one group)"
    )
    against: list[str] = option(
        list(stage.EVALUATION_SETS),
        f"evaluation prompts to check against: shipped sets ({', '.join(stage.EVALUATION_SETS)}) or JSONL "
        "files of records with a turns/prompt/instruction/question field",
    )
    contamination_threshold: float = option(
        0.85, "cosine to the nearest evaluation prompt at which an instruction counts as contaminated"
    )
    ngram: int = option(stage.NGRAM, "words per n-gram in the overlap measure")
    ngram_threshold: float = option(
        0.5, "share of an evaluation prompt's n-grams found in an instruction at which it counts as contaminated"
    )
    embedding_model: str | None = option(
        None, "sentence-transformers model (default: the run's, else all-MiniLM-L6-v2)"
    )
    embed_batch_size: int | None = option(None, "texts per embedding batch (default: by text length)")
    embedding: EmbeddingOptions = option(EmbeddingOptions(), "precision, the embedding cache and the engine")
    index: knn.IndexOptions = option(knn.IndexOptions(), "the FAISS index of the instructions", prefix="index_")
    device: str = option("auto", "auto, cpu, cuda, ...")
    layout: str = option(
        "auto",
        "the semantic view's 2-D layout of the instructions (layout.parquet, shown by admap view): umap "
        "(umap-learn, the layout extra), pca, none; auto: umap when installed, else pca",
    )
    top: int = option(20, "groups and contaminated instructions shown with their texts in report.md")
    out: str | None = option(None, "output folder (default: RUN_DIR/neighbours)")

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        for name in ("near_duplicate_threshold", "contamination_threshold", "ngram_threshold"):
            if not -1 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [-1, 1], got {getattr(self, name)}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if self.top < 0:
            raise ValueError(f"top must be >= 0, got {self.top}")
        if self.layout not in layout.LAYOUTS:
            raise ValueError(f"layout must be one of {layout.LAYOUTS}, got {self.layout!r}")


def run_neighbours(config: NeighboursConfig, *, progress: bool = True, command: str | None = None) -> Path:
    run = MapRun.open(config.run_dir)
    map_table = run.map_table(["instruction_id", "instruction", "region"])
    prompts = pd.concat([stage.read_prompts(source) for source in config.against], ignore_index=True)
    model = config.embedding_model or run.embedding_model
    out = Path(config.out) if config.out else run.path / NEIGHBOURS

    ids = map_table["instruction_id"].to_numpy(dtype=object)
    texts = map_table["instruction"].fillna("").astype(str).tolist()
    vectors, embedding_report = embedded_texts(
        texts + prompts["eval_prompt"].tolist(),
        model=model,
        options=config.embedding,
        device=config.device,
        batch_size=config.embed_batch_size,
        progress=progress,
    )
    instruction_vectors, prompt_vectors = vectors[: len(texts)], vectors[len(texts) :]

    similarities, positions = knn.self_neighbours(instruction_vectors, config.k, config.index)
    # Kept with the run for searches of its own (new prompts against these instructions).
    index = knn.build_index(instruction_vectors, config.index)
    found = positions >= 0
    neighbour_table = pd.DataFrame(
        {
            "instruction_id": np.repeat(ids, found.sum(axis=1)),
            "rank": np.nonzero(found)[1] + 1,
            "neighbour_id": ids[positions[found]],
            "similarity": similarities[found],
        }
    )
    groups = stage.near_duplicate_groups(ids, similarities, positions, config.near_duplicate_threshold)

    contamination = stage.contamination_table(
        ids,
        texts,
        prompts,
        *nearest_prompts(instruction_vectors, prompt_vectors),
        similarity_threshold=config.contamination_threshold,
        ngram_threshold=config.ngram_threshold,
        n=config.ngram,
    )
    contaminated = contamination[contamination["is_contaminated"]]
    method = layout.resolve_layout(config.layout)
    layout_record, coordinates = {"method": method}, None
    if method != "none":
        start = time.perf_counter()
        xy = layout.semantic_layout(instruction_vectors, method)
        layout_record["seconds"] = round(time.perf_counter() - start, 2)
        layout_record["neighbourhood_kept"] = layout.neighbourhood_kept(instruction_vectors, xy)
        coordinates = pd.DataFrame({"instruction_id": ids, "semantic_x": xy[:, 0], "semantic_y": xy[:, 1]})
    summary = {
        **provenance(command),
        "map_run_id": run.run_id,
        "run_dir": str(run.path),
        "model": model,
        "index": {"kind": config.index.kind_for(len(ids)), "vectors": int(len(ids))},
        "instructions": int(len(ids)),
        "near_duplicates": {
            "threshold": config.near_duplicate_threshold,
            "groups": int(groups["group"].nunique()),
            "instructions_in_groups": int(len(groups)),
            "to_drop": int((~groups["is_kept"]).sum()),
            "keep_rule": "the first of each group in the dataset's order",
        },
        "contamination": {
            "against": {name: int(count) for name, count in prompts["eval_set"].value_counts(sort=False).items()},
            "similarity_threshold": config.contamination_threshold,
            "ngram": config.ngram,
            "ngram_threshold": config.ngram_threshold,
            "contaminated": int(len(contaminated)),
            "by_set": {name: int(count) for name, count in contaminated["eval_set"].value_counts().items()},
        },
        "layout": layout_record,
        "embedding": embedding_report,
        "config": to_dict(config),
    }
    with writing_into(run.path, out) as staging:
        neighbour_table.to_parquet(staging / "neighbours.parquet", index=False)
        groups.to_parquet(staging / "near_duplicates.parquet", index=False)
        contamination.to_parquet(staging / "contamination.parquet", index=False)
        knn.write_index(index, staging / "instructions.faiss")
        if coordinates is not None:
            coordinates.to_parquet(staging / "layout.parquet", index=False)
        pd.DataFrame({"instruction_id": ids}).to_parquet(staging / "index_ids.parquet", index=False)
        (staging / "neighbours.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (staging / "report.md").write_text(neighbours_report(summary, groups, contamination, map_table, config.top))
    logger.info(
        "%s: %d near-duplicate groups (%d to drop), %d contaminated instructions",
        out,
        summary["near_duplicates"]["groups"],
        summary["near_duplicates"]["to_drop"],
        summary["contamination"]["contaminated"],
    )
    return out


def nearest_prompts(instruction_vectors: np.ndarray, prompt_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each instruction's nearest evaluation prompt: ``(similarity, position)``, exact (the prompts are few)."""
    similarities, positions = knn.search(
        knn.build_index(prompt_vectors, knn.IndexOptions(kind="flat")), instruction_vectors, 1
    )
    return similarities[:, 0], positions[:, 0]


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + " […]"
    return text.replace("|", "\\|")


def neighbours_report(
    summary: dict, groups: pd.DataFrame, contamination: pd.DataFrame, map_table: pd.DataFrame, top: int
) -> str:
    text = map_table.set_index("instruction_id")["instruction"]
    near, against = summary["near_duplicates"], summary["contamination"]
    sets = ", ".join(f"{name} ({count})" for name, count in against["against"].items())
    lines = [
        f"# Neighbourhoods of `{summary['run_dir']}`",
        "",
        f"- instructions: {summary['instructions']}; model {summary['model']}; index {summary['index']['kind']}",
        f"- near duplicates (cosine ≥ {near['threshold']:g}): {near['groups']} groups holding "
        f"{near['instructions_in_groups']} instructions; {near['to_drop']} to drop ({near['keep_rule']} is kept)",
        f"- contamination against {sets}: {against['contaminated']} instructions (cosine ≥ "
        f"{against['similarity_threshold']:g} to the nearest prompt, or ≥ {against['ngram_threshold']:.0%} of a "
        f"prompt's {against['ngram']}-grams)",
        f"- command: `{summary['command']}`",
        "",
        f"## Near-duplicate groups (the {min(top, near['groups'])} largest)",
        "",
    ]
    largest = groups.groupby("group")["group_size"].first().sort_values(ascending=False, kind="mergesort").head(top)
    for group in largest.index:
        members = groups[groups["group"] == group]
        kept = members[members["is_kept"]].iloc[0]
        lines += [
            f"### Group {group}: {len(members)} instructions",
            "",
            "| kept | near duplicate | cosine |",
            "|---|---|---|",
        ]
        for row in members[~members["is_kept"]].itertuples():
            lines.append(
                f"| {_cell(text.get(kept.instruction_id, ''))} | {_cell(text.get(row.instruction_id, ''))} | "
                f"{row.closest_similarity:.3f} |"
            )
        lines.append("")
    flagged = contamination[contamination["is_contaminated"]].sort_values(
        ["similarity", "ngram_overlap"], ascending=False, kind="mergesort"
    )
    lines += [
        f"## Contaminated instructions (the {min(top, len(flagged))} closest)",
        "",
        "| instruction | nearest evaluation prompt | set | cosine | n-gram overlap | why |",
        "|---|---|---|---|---|---|",
    ]
    for row in flagged.head(top).itertuples():
        lines.append(
            f"| {_cell(text.get(row.instruction_id, ''))} | {_cell(row.eval_prompt)} | {row.eval_set} "
            f"{row.eval_id} | {row.similarity:.3f} | {row.ngram_overlap:.0%} | {row.reason} |"
        )
    return "\n".join(lines) + "\n"


COMMAND = Command(
    "neighbours",
    NeighboursConfig,
    run_neighbours,
    "near-duplicate instructions and contamination with MT-Bench, Evol-Instruct or any prompt file",
)
