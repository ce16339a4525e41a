"""`admap select`: the DPO pairs (TRL format) of the instructions one selection strategy keeps, after the
curation filters (`admap.curate`: id lists from the viewer, suspect pairs from `admap diagnose`), with a
summary of what each filter left beside them."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from admap import curate
from admap.commands import Command
from admap.config import option, to_dict
from admap.durable import publish, write_bytes
from admap.hub import PushWhenWritten
from admap.provenance import provenance
from admap.run_folder import NEIGHBOURS, Diagnosis, MapRun
from admap.select import (
    PAIR_COLUMNS,
    PAIR_RULES,
    TrlFragments,
    locate_pairs,
    preference_pairs,
    rows_of_instructions,
    trl_fragments,
    trl_jsonl,
)
from admap_baselines import STRATEGIES, SelectionInputs, SelectionOptions

logger = logging.getLogger(__name__)

ORDER = (
    "mapped instructions, then --include-ids keeps the listed ones, then --exclude-ids leaves the listed ones out, "
    "then --drop-near-duplicates and --drop-contaminated leave out what `admap neighbours` flagged, "
    "then --drop-suspects-* drops flagged pairs (the pair, not its instruction), then the strategy chooses from "
    "what is left, sized against it"
)
# Unknown or unmapped ids named in the summary's warning: the summary lists them all.
SHOWN_IN_WARNINGS = 5


@dataclass
class SelectConfig:
    """`admap select`: the DPO pairs of the instructions one selection strategy keeps, from a finished map run.

    Before the strategy chooses, --include-ids keeps only the listed instructions, --exclude-ids leaves the
    listed ones out (an id in both is left out), --drop-near-duplicates and --drop-contaminated leave out
    what `admap neighbours` flagged, and --drop-suspects-top/--drop-suspects-above drop the
    pairs `admap diagnose` flags (the pair alone, never its instruction); the strategy then chooses from
    what is left, sized against it. A summary of every step is written beside the pairs
    (<out>.summary.json)."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    selection: SelectionOptions = option(SelectionOptions(), "which instructions (the experiments' selection options)")
    pair_rule: Literal["annotated", "best_vs_random", "alignment_score"] = option(
        "annotated", "DPO pair rule (best_vs_random draws with --seed)"
    )
    include_ids: str | None = option(
        None,
        "keep only these instructions: the viewer's export (JSONL of {'instruction_id': ...}; any JSONL of "
        "records with an instruction_id, such as a pair file), a CSV or Parquet file with an instruction_id "
        "column, or a text file of one id per line",
    )
    exclude_ids: str | None = option(
        None, "leave these instructions out (a file as for --include-ids); an id in both files is left out"
    )
    drop_suspects_top: int | None = option(
        None,
        "drop this many of the most suspect pairs of `admap diagnose` (its best-ranked flagged pairs over the "
        "whole run; the subset loses those it holds): the pair, not its instruction",
    )
    drop_suspects_above: float | None = option(
        None,
        "drop the flagged pairs whose suspicion_score is at least this; with --drop-suspects-top, that many of "
        "them at most, best-ranked first",
    )
    diagnosis: str | None = option(
        None, "the `admap diagnose` folder the --drop-suspects flags read (default: RUN_DIR/diagnosis)"
    )
    drop_near_duplicates: bool = option(
        False,
        "leave out the near duplicates `admap neighbours` found: every member of a group but the one it keeps "
        "(the first in the dataset's order)",
    )
    drop_contaminated: bool = option(
        False, "leave out the instructions `admap neighbours` found contaminated with its evaluation prompts"
    )
    neighbours: str | None = option(
        None, "the `admap neighbours` folder those two flags read (default: RUN_DIR/neighbours)"
    )
    out: str | None = option(
        None,
        "output JSONL (default: RUN_DIR/pairs/<strategy>[-f<fraction>]-<pair_rule>-seed<seed>[-dynamics<hash>]"
        "[-include<sha>][-exclude<sha>][-drop-top<K>][-drop-above<X>][-diagnosis<hash>].jsonl); the summary "
        "goes beside it, <out without .jsonl>.summary.json",
    )
    hub: PushWhenWritten = option(
        PushWhenWritten(), "publishing the run, this subset a configuration of it, on the Hugging Face hub"
    )

    def __post_init__(self) -> None:
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")
        if self.drop_suspects_top is not None and self.drop_suspects_top < 1:
            raise ValueError(f"drop_suspects_top must be >= 1, got {self.drop_suspects_top}")
        if self.drop_suspects_above is not None and not math.isfinite(self.drop_suspects_above):
            raise ValueError(f"drop_suspects_above must be a finite number, got {self.drop_suspects_above}")
        if self.diagnosis is not None and not self.drops_suspects:
            raise ValueError(
                f"diagnosis {self.diagnosis!r} is read only to drop suspect pairs: "
                "give --drop-suspects-top K or --drop-suspects-above X"
            )
        if self.neighbours is not None and not self.drops_neighbours:
            raise ValueError(
                f"neighbours {self.neighbours!r} is read only to leave instructions out: "
                "give --drop-near-duplicates or --drop-contaminated"
            )
        if self.drops_suspects and self.pair_rule == "alignment_score":
            raise ValueError(
                "drop_suspects_* drops the annotated pairs the scores contradict; pair_rule 'alignment_score' "
                "orders every pair by the scores, so none contradicts them: use pair_rule 'annotated' or "
                "'best_vs_random'"
            )

    @property
    def drops_suspects(self) -> bool:
        return self.drop_suspects_top is not None or self.drop_suspects_above is not None

    @property
    def drops_neighbours(self) -> bool:
        return self.drop_near_duplicates or self.drop_contaminated

    @staticmethod
    def epilog() -> str:
        """The end of `admap select --help`: the strategies registered when the parser is built."""
        return f"selection strategies (--strategy): {', '.join(STRATEGIES.names())}"

    def default_out(self, run_dir: Path, *, id_file_sha256: dict[str, str] | None = None) -> Path:
        """A path inside the run's ``pairs/`` that differs whenever the selection, the pair rule or a curation
        filter does: an id file by its content (``id_file_sha256``: ``include``/``exclude`` to the file's
        SHA-256), so that two exports saved under one name never share an output."""
        digests = id_file_sha256 or {}
        selection = self.selection
        name = selection.strategy
        if selection.fraction is not None:
            name += f"-f{selection.fraction:g}"
        name += f"-{self.pair_rule}-seed{selection.seed}"
        if selection.dynamics:
            name += "-dynamics" + _path_digest(selection.dynamics)
        for kind, path in (("include", self.include_ids), ("exclude", self.exclude_ids)):
            if path is not None:
                assert kind in digests, f"default_out needs the SHA-256 of the {kind} file {path}"
                name += f"-{kind}{digests[kind][:8]}"
        if self.drop_near_duplicates:
            name += "-dedup"
        if self.drop_contaminated:
            name += "-decontam"
        if self.neighbours:
            name += "-neighbours" + _path_digest(self.neighbours)
        if self.drop_suspects_top is not None:
            name += f"-drop-top{self.drop_suspects_top}"
        if self.drop_suspects_above is not None:
            name += f"-drop-above{self.drop_suspects_above:g}"
        if self.diagnosis:
            name += "-diagnosis" + _path_digest(self.diagnosis)
        return run_dir / "pairs" / f"{name}.jsonl"


def _path_digest(path: str) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]


def summary_path(out: Path) -> Path:
    """Where the summary of the pairs in ``out`` goes: ``x.jsonl`` -> ``x.summary.json``."""
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + ".summary.json")


def write_subset_pairs(
    located_pairs: pd.DataFrame, fragments: TrlFragments, ids: np.ndarray, *, path: Path
) -> dict[str, int]:
    """Write the pairs (`locate_pairs`'s for ``fragments``) of the instructions ``ids`` as TRL records;
    returns the counts."""
    subset_pairs = rows_of_instructions(located_pairs, ids)
    write_bytes(trl_jsonl(subset_pairs, fragments), path)
    logger.info("%s: %d pairs from %d instructions", path, len(subset_pairs), len(ids))
    return {"instructions": int(len(ids)), "pairs": int(len(subset_pairs))}


def write_subsets_pairs(
    pairs: pd.DataFrame,
    map_table: pd.DataFrame,
    responses: pd.DataFrame,
    subsets: dict[str, np.ndarray],
    *,
    folder: Path,
) -> dict[str, dict[str, int]]:
    """Write ``folder/<name>.jsonl`` for each subset (its name to its instruction ids): the pairs of its
    instructions as TRL records; returns each one's counts. Texts are encoded, and pairs located, once for
    all the files."""
    fragments = trl_fragments(map_table, responses)
    located_pairs = locate_pairs(pairs, fragments)
    return {
        name: write_subset_pairs(located_pairs, fragments, ids, path=folder / f"{name}.jsonl")
        for name, ids in subsets.items()
    }


def id_file_record(id_file: curate.IdFile, match: curate.IdMatch) -> dict:
    """The summary's account of one id file: where it is, its digest, and how its ids met the run."""
    return {
        **id_file.record(),
        "mapped": int(len(match.mapped)),
        "not_mapped": int(len(match.unmapped)),
        "unknown": int(len(match.unknown)),
        "not_mapped_ids": match.unmapped.tolist(),
        "unknown_ids": match.unknown.tolist(),
    }


def read_ids(path: str, kind: str, run: MapRun, map_table: pd.DataFrame) -> tuple[curate.IdFile, curate.IdMatch]:
    """Read an id file and match it to the run: ids the run does not know, or has off the map, are warned
    about; a file of which no id is the run's is refused (an export of another run, most likely)."""
    id_file = curate.read_id_file(path)
    match = curate.match_ids(id_file.ids, map_table)
    if len(match.unknown) and len(match.unknown) == len(id_file.ids):
        raise ValueError(
            f"{path} (--{kind}-ids): none of its {len(id_file.ids)} ids is an instruction of {run.path} "
            f"(first: {match.unknown[:SHOWN_IN_WARNINGS].tolist()}): is it an export of another run?"
        )
    for ids, what in ((match.unknown, "are not instructions of"), (match.unmapped, "are not on the map of")):
        if len(ids):
            logger.warning(
                "%s (--%s-ids): %d of its %d ids %s %s and do nothing (first: %s; all listed in the summary)",
                path,
                kind,
                len(ids),
                len(id_file.ids),
                what,
                run.path,
                ids[:SHOWN_IN_WARNINGS].tolist(),
            )
    return id_file, match


def suspects_record(config: SelectConfig, diagnosis: Diagnosis, pool: curate.CuratedPool, selected: np.ndarray) -> dict:
    """The summary's account of the suspect pairs: which diagnosis, the limits, and every pair dropped, with
    whether its instruction is in the subset (``selected``)."""
    dropped = pool.dropped_pairs[[*PAIR_COLUMNS, "rank", "suspicion_score"]]
    dropped = dropped.assign(in_subset=dropped["instruction_id"].isin(pd.Index(selected, dtype=object)))
    return {
        "diagnosis": str(diagnosis.folder),
        "suspects_sha256": hashlib.sha256(diagnosis.suspects_path.read_bytes()).hexdigest(),
        "diagnosis_map_run_id": diagnosis.summary.get("map_run_id"),
        "top": config.drop_suspects_top,
        "above": config.drop_suspects_above,
        "flagged": int(diagnosis.suspects["is_suspect"].astype(bool).sum()),
        "chosen": int(len(pool.chosen_suspects)),
        # Chosen pairs not dropped belong to instructions outside the pool, or are not pairs of this pair rule.
        "dropped": int(len(dropped)),
        "dropped_in_subset": int(dropped["in_subset"].sum()),
        "dropped_pairs": dropped.to_dict(orient="records"),
    }


def excluded_ids(id_files: dict, neighbour_drops: dict[str, np.ndarray]) -> np.ndarray | None:
    """The ids the pool leaves out: the exclude file's and those `admap neighbours` flagged."""
    parts = [id_files["exclude"][0].ids] if "exclude" in id_files else []
    parts += list(neighbour_drops.values())
    return pd.unique(np.concatenate(parts)) if parts else None


def neighbours_record(
    config: SelectConfig, run: MapRun, drops: dict[str, np.ndarray], pool: curate.CuratedPool
) -> dict:
    """What the neighbour flags left out of the pool, by flag: the ids that were in it after --include-ids."""
    included = set(pool.instructions.excluded) | set(pool.instructions.map_table[curate.ID_COLUMN])
    folder = Path(config.neighbours) if config.neighbours else run.path / NEIGHBOURS
    record = {"folder": str(folder)}
    for name, ids in drops.items():
        left_out = [i for i in ids if i in included]
        record[name] = {"flagged": int(len(ids)), "left_out": len(left_out), "left_out_ids": left_out}
    return record


def run_select(config: SelectConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write the pairs of the instructions ``config.selection`` keeps from a finished run, after the curation
    filters in `admap.curate`'s order, and their summary beside them; returns the pairs' path."""
    run = MapRun.open(config.run_dir)
    responses, map_table = run.scores(), run.map_table()
    selection = config.selection
    # Every input is read and checked before anything is written.
    id_files: dict[str, tuple[curate.IdFile, curate.IdMatch]] = {
        kind: read_ids(path, kind, run, map_table)
        for kind, path in (("include", config.include_ids), ("exclude", config.exclude_ids))
        if path is not None
    }
    neighbour_drops = (
        run.neighbours(config.neighbours).to_drop(
            near_duplicates=config.drop_near_duplicates, contaminated=config.drop_contaminated
        )
        if config.drops_neighbours
        else {}
    )
    diagnosis = run.diagnosis(config.diagnosis) if config.drops_suspects else None
    if diagnosis is not None:
        curate.check_suspects_table(diagnosis.suspects, source=str(diagnosis.suspects_path))
    dynamics = pd.read_parquet(selection.dynamics) if selection.dynamics else None

    pool = curate.curated_pool(
        map_table,
        preference_pairs(responses, rule=config.pair_rule, annotated=run.preferences(), seed=selection.seed),
        include=id_files["include"][0].ids if "include" in id_files else None,
        exclude=excluded_ids(id_files, neighbour_drops),
        suspects=diagnosis.suspects if diagnosis is not None else None,
        top=config.drop_suspects_top,
        above=config.drop_suspects_above,
    )
    if config.drop_suspects_top is not None and len(pool.chosen_suspects) < config.drop_suspects_top:
        logger.warning(
            "%s: %d pairs picked for --drop-suspects-top %d: no more are flagged%s",
            diagnosis.folder,
            len(pool.chosen_suspects),
            config.drop_suspects_top,
            "" if config.drop_suspects_above is None else f" with suspicion >= {config.drop_suspects_above:g}",
        )
    ids = selection.select(SelectionInputs(pool.instructions.map_table, responses, pool.pairs, run.scorer, dynamics))
    subset_pairs = rows_of_instructions(pool.pairs, ids)
    if subset_pairs.empty:
        logger.warning(
            "strategy %r kept %d instructions with no pairs%s",
            selection.strategy,
            len(ids),
            " (--strategy full keeps every included instruction)" if config.include_ids else "",
        )
    digests = {kind: id_file.sha256 for kind, (id_file, _) in id_files.items()}
    out = Path(config.out) if config.out else config.default_out(run.path, id_file_sha256=digests)
    if config.hub.push_to_hub is not None and out.resolve().parent != (run.path / "pairs").resolve():
        raise ValueError(
            f"--push-to-hub publishes the run's pairs/ folder, and {out} lies outside it: leave --out to its default"
        )
    summary = {
        **provenance(command),
        "map_run_id": run.run_id,
        "run_dir": str(run.path),
        "pairs_file": str(out),
        "pair_rule": config.pair_rule,
        "selection": to_dict(selection),
        "order": ORDER,
        "instructions": {
            "mapped": pool.instructions.mapped,
            "after_include": pool.instructions.after_include,
            "after_exclude": pool.instructions.after_exclude,
            "selected": int(len(ids)),
            "selected_with_pairs": int(subset_pairs["instruction_id"].nunique()),
        },
        "pairs": {
            "of_pool": pool.pairs_of_pool,
            "after_drop_suspects": int(len(pool.pairs)),
            "selected": int(len(subset_pairs)),
        },
        "include_ids": id_file_record(*id_files["include"]) if "include" in id_files else None,
        "exclude_ids": (
            {
                **id_file_record(*id_files["exclude"]),
                "excluded_ids": [i for i in pool.instructions.excluded if i in set(id_files["exclude"][0].ids)],
            }
            if "exclude" in id_files
            else None
        ),
        "neighbours": neighbours_record(config, run, neighbour_drops, pool) if neighbour_drops else None,
        "drop_suspects": suspects_record(config, diagnosis, pool, ids) if diagnosis is not None else None,
    }
    with run.writing(out):
        fragments = trl_fragments(map_table, responses)
        write_bytes(trl_jsonl(locate_pairs(subset_pairs, fragments), fragments), out)
        text = json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
        publish(summary_path(out), lambda staging: staging.write_text(text, encoding="utf-8"))
    logger.info("%s: %d pairs from %d instructions (summary: %s)", out, len(subset_pairs), len(ids), summary_path(out))
    config.hub.push(run.path)
    return out


COMMAND = Command(
    "select", SelectConfig, run_select, "write one selection strategy's DPO pairs (TRL format) from a map run"
)
