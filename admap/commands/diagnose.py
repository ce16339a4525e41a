"""`admap diagnose`: rank the pairs whose annotation the alignment scores contradict."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from admap import diagnose
from admap.commands import Command
from admap.config import option
from admap.embed import EmbeddingOptions
from admap.embedding_store import embedded_texts
from admap.provenance import command_line
from admap.run_folder import MapRun, writing_into
from admap.score.annotation import annotation_labels
from admap.select import preference_pairs

logger = logging.getLogger(__name__)


@dataclass
class DiagnoseConfig:
    """`admap diagnose`: rank the pairs whose annotation the alignment scores contradict."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    top: int = option(50, "suspect pairs shown with their texts in report.md")
    neighbour_k: int = option(
        0,
        "also read each pair's label against those of the K pairs most like it (response embeddings, FAISS): "
        "the neighbour_suspicion column, independent of the scores (0: off)",
    )
    embedding_model: str | None = option(
        None, "neighbour_k: sentence-transformers model (default: the run's, else all-MiniLM-L6-v2)"
    )
    embedding: EmbeddingOptions = option(EmbeddingOptions(), "neighbour_k: precision, the embedding cache, the engine")
    device: str = option("auto", "neighbour_k: auto, cpu, cuda, ...")
    out: str | None = option(None, "output folder (default: RUN_DIR/diagnosis)")

    def __post_init__(self) -> None:
        if self.top < 0:
            raise ValueError(f"top must be >= 0, got {self.top}")
        if self.neighbour_k < 0:
            raise ValueError(f"neighbour_k must be >= 0, got {self.neighbour_k}")


def run_diagnose(config: DiagnoseConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write ``suspects.parquet`` (ranked pairs with texts), ``instructions.parquet`` (per-instruction
    agreement and flags), ``report.md`` and ``diagnosis.json``; returns the output folder."""
    run = MapRun.open(config.run_dir)
    responses, map_table, annotated = run.scores(), run.map_table(), run.preferences()
    if annotated is None and not responses["rating"].notna().any():
        raise ValueError(f"{run.path}: the dataset has neither ratings nor pairs to diagnose against")
    pairs = preference_pairs(responses, rule="annotated", annotated=annotated)
    out = Path(config.out) if config.out else run.path / "diagnosis"

    instructions = diagnose.instruction_agreement(responses.assign(label=annotation_labels(responses)))
    instructions = instructions.merge(
        map_table[["instruction_id", "instruction", "region", "mean_score", "score_variance"]],
        on="instruction_id",
        how="left",
    )
    suspicion = diagnose.pair_suspicion(pairs, responses)
    if config.neighbour_k:
        suspicion["neighbour_suspicion"] = neighbour_suspicion(run, responses, pairs, config, progress)
    suspects = diagnose.rank_suspects(suspicion)
    text = responses.set_index("response_id")
    for side in ("chosen", "rejected"):
        ids = suspects[f"{side}_id"]
        suspects[f"{side}_response"] = ids.map(text["response"]).to_numpy()
        suspects[f"{side}_rating"] = ids.map(text["rating"]).to_numpy()
        suspects[f"{side}_chars"] = ids.map(text["response_chars"]).to_numpy()
    suspects["instruction"] = suspects["instruction_id"].map(map_table.set_index("instruction_id")["instruction"])
    suspects["reason"] = [
        f"the scores prefer the rejected response (margin {m:+.3f}, {s:.2f} spreads)"
        if bad
        else f"the scores agree (margin {m:+.3f})"
        for m, s, bad in zip(suspects["margin"], suspects["suspicion_score"], suspects["is_suspect"])
    ]
    diagnosable = instructions["is_diagnosable"]
    low_impact = instructions["is_low_impact"]
    by_cosine = instructions[diagnosable].sort_values(["cosine", "instruction_id"], kind="mergesort")
    tail = max(1, int(0.01 * len(by_cosine))) if len(by_cosine) else 0
    summary = {
        "run_dir": str(run.path),
        "map_run_id": run.run_id,
        "command": command_line(command),
        "pairs": int(len(suspects)),
        "pairs_scored": int(suspects["margin"].notna().sum()),
        "suspect_pairs": int(suspects["is_suspect"].sum()),
        "agreement_rate": float(1 - suspects["is_suspect"].sum() / max(suspects["margin"].notna().sum(), 1)),
        "instructions": int(len(instructions)),
        "instructions_diagnosable": int(diagnosable.sum()),
        "instructions_not_diagnosable": int((~diagnosable).sum()),
        "instructions_low_impact": int(low_impact.sum()),
        "lowest_cosine_1pct": by_cosine.head(tail)["instruction_id"].tolist(),
        "highest_cosine_1pct": by_cosine.tail(tail)["instruction_id"].tolist(),
    }
    if config.neighbour_k:
        against = suspects["neighbour_suspicion"] > 0
        summary["neighbour_labels"] = {
            "k": config.neighbour_k,
            "pairs_against_their_neighbours": int(against.sum()),
            "suspect_pairs_against_their_neighbours": int((against & suspects["is_suspect"]).sum()),
        }
    # The folder is written whole: an earlier diagnosis there is replaced, never mixed with this one.
    with writing_into(run.path, out) as staging:
        suspects.to_parquet(staging / "suspects.parquet", index=False)
        instructions.to_parquet(staging / "instructions.parquet", index=False)
        (staging / "diagnosis.json").write_text(json.dumps(summary, indent=2) + "\n")
        (staging / "report.md").write_text(diagnosis_report(summary, suspects, config.top))
    logger.info("%s: %d of %d pairs contradicted by the scores", out, summary["suspect_pairs"], summary["pairs"])
    return out


def neighbour_suspicion(
    run: MapRun, responses: pd.DataFrame, pairs: pd.DataFrame, config: DiagnoseConfig, progress: bool
) -> np.ndarray:
    """`diagnose.neighbour_label_suspicion` of ``pairs`` on the responses' embeddings."""
    features, _ = embedded_texts(
        responses["response"].fillna("").astype(str).tolist(),
        model=config.embedding_model or run.embedding_model,
        options=config.embedding,
        device=config.device,
        batch_size=None,
        progress=progress,
    )
    position = pd.Series(np.arange(len(responses)), index=responses["response_id"].to_numpy())
    ends = np.column_stack([pairs["chosen_id"].map(position), pairs["rejected_id"].map(position)]).astype(np.int64)
    return diagnose.neighbour_label_suspicion(features, ends, k=config.neighbour_k)


def _quote(text: str, limit: int = 700) -> str:
    text = text if len(text) <= limit else text[:limit] + " […]"
    return "\n".join("> " + line for line in text.splitlines() or [""])


def diagnosis_report(summary: dict, suspects: pd.DataFrame, top: int) -> str:
    lines = [
        f"# Diagnosis of `{summary['run_dir']}`",
        "",
        f"- pairs: {summary['pairs']} ({summary['pairs_scored']} scored); the scores contradict "
        f"{summary['suspect_pairs']} (agreement {summary['agreement_rate']:.1%})",
        f"- instructions: {summary['instructions']}; diagnosable {summary['instructions_diagnosable']}, "
        f"not diagnosable (fewer than 2 scored, labelled responses) {summary['instructions_not_diagnosable']}, "
        f"low impact (all labels tied or all scores equal) {summary['instructions_low_impact']}",
        f"- command: `{summary['command']}`",
        "",
    ]
    if "neighbour_labels" in summary:
        near = summary["neighbour_labels"]
        lines.insert(
            -1,
            f"- labels against those of the {near['k']} most alike pairs (neighbour_suspicion > 0): "
            f"{near['pairs_against_their_neighbours']} pairs, {near['suspect_pairs_against_their_neighbours']} "
            "of them also contradicted by the scores",
        )
    lines += [f"## The {min(top, int(suspects['is_suspect'].sum()))} most suspect pairs", ""]
    for row in suspects[suspects["is_suspect"]].head(top).itertuples():
        lines += [
            f"### {row.rank}. suspicion {row.suspicion_score:.2f}"
            + (f", against its neighbours {row.neighbour_suspicion:+.2f}" if "neighbour_labels" in summary else "")
            + f" — instruction `{row.instruction_id}`",
            "",
            _quote(str(row.instruction), 400),
            "",
            f"**Chosen** (rating {row.chosen_rating}, score {row.chosen_score:.3f}, {row.chosen_chars} chars)",
            "",
            _quote(str(row.chosen_response)),
            "",
            f"**Rejected** (rating {row.rejected_rating}, score {row.rejected_score:.3f}, {row.rejected_chars} chars)",
            "",
            _quote(str(row.rejected_response)),
            "",
        ]
    return "\n".join(lines)


COMMAND = Command(
    "diagnose", DiagnoseConfig, run_diagnose, "rank the pairs whose annotation the alignment scores contradict"
)
