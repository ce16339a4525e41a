"""`admap view`: the interactive data map as one self-contained HTML page, optionally served on localhost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from admap import view
from admap.commands import Command
from admap.config import option
from admap.dynamics import pair_dynamics
from admap.run_folder import MapRun


@dataclass
class ViewConfig:
    """`admap view`: the interactive data map as one self-contained HTML page (offline, no CDN)."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    out: str | None = option(None, "output HTML (default: RUN_DIR/view.html)")
    compare: list[str] = option([], "runs of other scorers on the same dataset, to colour the map by their regions")
    dynamics: str | None = option(
        None,
        "pair_margins.parquet of a DPO run on this run's pairs (python -m admap_experiments.run writes one per run; "
        "at least 2 recording points): a panel of the instructions' training dynamics (confidence against "
        "variability, Dataset Cartography) and colourings by its regions and confidence",
    )
    max_points: int = option(
        view.MAX_POINTS, "instructions in the page at most, a seeded random sample beyond (0: all)"
    )
    text_budget: int = option(
        view.TEXT_BUDGET,
        "characters of dataset text in the single-file page; beyond it, suspects, instructions near a region "
        "boundary and a sample keep theirs whole in half of it and the rest are shortened, longest first (0: all)",
    )
    seed: int = option(42, "seed for the sample when there are more than max_points instructions")
    serve: bool = option(
        False,
        "serve the page on 127.0.0.1 until interrupted instead of writing it: its texts, whole, come from the run's "
        "tables as the page asks for them",
    )
    port: int = option(8765, "port for --serve (0: any free port)")

    def __post_init__(self) -> None:
        for name in ("max_points", "text_budget"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.serve and self.out is not None:
            raise ValueError("--out names the single-file page; --serve writes none (it serves the run's texts)")


def run_view(config: ViewConfig, *, progress: bool = True, command: str | None = None) -> Path | None:
    """Write the run's interactive map (``view.html``), with suspect flags where ``admap diagnose`` has run,
    other scorers' regions from ``config.compare`` and the training dynamics of ``config.dynamics``, and return
    its path; or, with ``config.serve``, serve it with the run's texts until interrupted (returns None)."""
    run = MapRun.open(config.run_dir)
    others: list[view.OtherRun] = []
    for other in map(MapRun.open, config.compare):
        label = other.label
        if label in {run.label, *(o.label for o in others)}:
            label = f"{label} ({other.path.name})"
        regions = other.map_table(["instruction_id", "region"])
        others.append(view.OtherRun(label, regions.set_index("instruction_id")["region"]))
    map_table, scores = run.map_table(), run.scores()
    page = view.PageInstructions.of(map_table, scores, config.max_points or None, config.seed)
    payload = view.build_payload(
        map_table,
        scores,
        run.summary,
        suspects=run.suspects(),
        others=others,
        neighbourhoods=run.neighbourhoods_if_any(),
        dynamics=pair_dynamics(pd.read_parquet(config.dynamics)) if config.dynamics else None,
        max_points=config.max_points or None,
        seed=config.seed,
        text_budget=config.text_budget,
        texts=view.SERVED if config.serve else view.INLINE,
        name=run.path.name,
        run_dir=config.run_dir,
        page=page,
    )
    if config.serve:
        view.serve(view.PageServer(view.render_html(payload).encode("utf-8"), "view.html", config.port, page))
        return None
    out = Path(config.out) if config.out else run.path / "view.html"
    with run.writing(out):
        view.write_view(payload, out)
    return out


COMMAND = Command(
    "view", ViewConfig, run_view, "write the interactive map as one offline HTML page; --serve opens it on localhost"
)
