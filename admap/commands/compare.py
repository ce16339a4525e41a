"""`admap compare-scorers`: agreement between the scores, regions and length bias of several map runs."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from admap import compare
from admap.commands import Command
from admap.config import option
from admap.plot import markdown_table
from admap.provenance import command_line
from admap.run_folder import MapRun

logger = logging.getLogger(__name__)


@dataclass
class CompareConfig:
    """`admap compare-scorers`: agreement between the scores, regions and length bias of several map runs."""

    runs: list[str] = option(help="run directories of `admap map` on the same dataset, one per scorer", positional=True)
    out: str = option("runs/compare-scorers", "output folder")

    def __post_init__(self) -> None:
        if len(self.runs) < 2:
            raise ValueError(f"compare-scorers needs at least 2 run directories, got {len(self.runs)}")


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def run_compare(config: CompareConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write ``agreement.csv``, ``regions.csv``, ``length.csv``, confusion tables, ``compare.png`` and
    ``compare.md`` into ``config.out``; returns that folder."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    scores, regions, labels, sources = {}, {}, [], set()
    lengths = None
    for run in map(MapRun.open, config.runs):
        label = run.label
        if label in labels:
            label = f"{label} ({run.path.name})"
        labels.append(label)
        sources.add(run.summary["dataset"]["source"])
        responses = run.scores().set_index("response_id")
        scores[label] = responses["alignment_score"]
        lengths = responses["response_chars"] if lengths is None else lengths.combine_first(responses["response_chars"])
        regions[label] = run.map_table(["instruction_id", "region"]).set_index("instruction_id")["region"]
    if len(sources) > 1:
        raise ValueError(f"the runs map different datasets: {sorted(sources)}")
    score_table, region_table = pd.DataFrame(scores), pd.DataFrame(regions)
    agreement = compare.score_agreement(score_table)
    region_overlap = compare.region_agreement(region_table)
    length = compare.length_correlation(score_table, lengths.reindex(score_table.index))
    agreement.to_csv(out / "agreement.csv", index=False)
    region_overlap.to_csv(out / "regions.csv", index=False)
    length.to_csv(out / "length.csv", index=False)
    for first, second in itertools.combinations(labels, 2):
        confusion = compare.region_confusion(region_table, first, second)
        confusion.to_csv(out / f"confusion_{_slug(first)}__{_slug(second)}.csv")
    dataset = Path(next(iter(sources))).name
    compare.plot_comparison(agreement, length, out / "compare.png", title=f"Scorers on {dataset}")
    lines = [
        f"# Scorer agreement on `{dataset}`",
        "",
        f"- runs: {', '.join(f'`{r}`' for r in config.runs)}",
        f"- command: `{command_line(command)}`",
        "",
        "## Per response",
        "",
        markdown_table(agreement),
        "",
        "## Regions (Jaccard, instructions mapped by both)",
        "",
        markdown_table(
            region_overlap.pivot_table(index=["scorer_a", "scorer_b"], columns="region", values="jaccard").reset_index()
        ),
        "",
        "## Length bias (correlation with response length in characters)",
        "",
        markdown_table(length),
        "",
    ]
    (out / "compare.md").write_text("\n".join(lines))
    logger.info("wrote %s", out)
    return out


COMMAND = Command(
    "compare-scorers", CompareConfig, run_compare, "agreement, region overlap and length bias of several scorers"
)
