"""`admap select`: the DPO pairs (TRL format) of the instructions one selection strategy keeps."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from admap.commands import Command
from admap.config import option
from admap.durable import write_jsonl
from admap.run_folder import MapRun
from admap.select import PAIR_RULES, preference_pairs, rows_of_instructions, trl_records
from admap_baselines import STRATEGIES, SelectionInputs, SelectionOptions

logger = logging.getLogger(__name__)


@dataclass
class SelectConfig:
    """`admap select`: the DPO pairs of the instructions one selection strategy keeps, from a finished map run."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    selection: SelectionOptions = option(SelectionOptions(), "which instructions (the experiments' selection options)")
    pair_rule: Literal["annotated", "best_vs_random", "alignment_score"] = option(
        "annotated", "DPO pair rule (best_vs_random draws with --seed)"
    )
    out: str | None = option(
        None,
        "output JSONL (default: RUN_DIR/pairs/<strategy>[-f<fraction>]-<pair_rule>-seed<seed>[-dynamics<hash>].jsonl)",
    )

    def __post_init__(self) -> None:
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")

    @staticmethod
    def epilog() -> str:
        """The end of `admap select --help`: the strategies registered when the parser is built."""
        return f"selection strategies (--strategy): {', '.join(STRATEGIES.names())}"

    def default_out(self, run_dir: Path) -> Path:
        """A path inside the run's ``pairs/`` that differs whenever the selection or the pair rule does."""
        selection = self.selection
        name = selection.strategy
        if selection.fraction is not None:
            name += f"-f{selection.fraction:g}"
        name += f"-{self.pair_rule}-seed{selection.seed}"
        if selection.dynamics:
            name += "-dynamics" + hashlib.sha256(str(Path(selection.dynamics).resolve()).encode()).hexdigest()[:8]
        return run_dir / "pairs" / f"{name}.jsonl"


def write_subset_pairs(
    pairs: pd.DataFrame, map_table: pd.DataFrame, responses: pd.DataFrame, ids: np.ndarray, *, path: Path
) -> dict[str, int]:
    """Write the pairs of the instructions ``ids`` as TRL records; returns the counts."""
    subset_pairs = rows_of_instructions(pairs, ids)
    write_jsonl(trl_records(subset_pairs, map_table, responses), path)
    logger.info("%s: %d pairs from %d instructions", path, len(subset_pairs), len(ids))
    return {"instructions": int(len(ids)), "pairs": int(len(subset_pairs))}


def run_select(config: SelectConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write the pairs of the instructions ``config.selection`` keeps from a finished run; returns the output path."""
    run = MapRun.open(config.run_dir)
    responses, map_table = run.scores(), run.map_table()
    selection = config.selection
    pairs = preference_pairs(responses, rule=config.pair_rule, annotated=run.preferences(), seed=selection.seed)
    dynamics = pd.read_parquet(selection.dynamics) if selection.dynamics else None
    inputs = SelectionInputs(map_table, responses, pairs, run.scorer, dynamics)
    ids = selection.select(inputs)
    out = Path(config.out) if config.out else config.default_out(run.path)
    with run.writing(out):
        write_subset_pairs(pairs, map_table, responses, ids, path=out)
    return out


COMMAND = Command(
    "select", SelectConfig, run_select, "write one selection strategy's DPO pairs (TRL format) from a map run"
)
