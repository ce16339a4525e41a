"""The Python API: the commands as functions over data held in memory, and a finished map as an object.

    import admap

    data_map = admap.map_dataset("demo", out="runs/demo")  # a file, a hub id, a DataFrame or a datasets.Dataset
    data_map.table                          # one row per instruction: mean_score, score_variance, region
    data_map.regions                        # instructions per region
    pairs = data_map.select("high_mean")    # a datasets.Dataset of TRL preference pairs
    diagnosis = data_map.diagnose()         # the pairs the scores contradict, ranked
    data_map.plot()                         # the map as a matplotlib Figure (inline in Jupyter)
    data_map.view()                         # the interactive map (inline in Jupyter)
    data_map.push_to_hub("you/demo-map")    # the subsets as a hub dataset, with a card

Every call runs the command of the same name (`admap map`, `select`, `diagnose`, `view`) with the same
configuration dataclass, so a notebook and a shell write the same run folder, with the same summary and
provenance; the summary's ``command`` records the Python call. Options are the commands' YAML keys, given
as keyword arguments: the dataset's (``format``, ``split``, ``limit``, ...) and the selection's
(``fraction``, ``seed``, ...) at the top level, nested sections as mappings (``generation={"model": ...}``,
``judge={"model": ...}``).
"""

from __future__ import annotations

import html
import json
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from admap.commands.diagnose import DiagnoseConfig, run_diagnose
from admap.commands.map import MapConfig, run_map
from admap.commands.neighbours import NeighboursConfig, run_neighbours
from admap.commands.push import PushConfig, run_push
from admap.commands.select import SelectConfig, run_select
from admap.commands.view import ViewConfig, run_view
from admap.config import build, known_keys
from admap.datamap import HIGH_MEAN, REGION_LABELS, REGIONS, UNMAPPED, RegionThresholds
from admap.inputs import InputOptions
from admap.load import PreferenceData
from admap.load.tables import is_table
from admap.plot import map_figure, map_titles, markdown_table
from admap.run_folder import MapRun, Neighbourhoods

if TYPE_CHECKING:
    import datasets
    from matplotlib.figure import Figure

# A notebook output is sent whole to the browser: the inline view holds fewer points and less text than
# `admap view`'s page (which a browser opens from disk) unless asked for more.
INLINE_MAX_POINTS = 20_000
INLINE_TEXT_BUDGET = 4_000_000
INLINE_HEIGHT_PX = 760
# Suspect pairs listed when a diagnosis is shown in a notebook.
SHOWN_SUSPECTS = 10


def _described(value: Any) -> str:
    """A value as the recorded call shows it: tables by their shape, not their rows."""
    if isinstance(value, pd.DataFrame):
        return f"<DataFrame of {len(value)} rows>"
    if is_table(value):
        size = getattr(value, "num_rows", None)
        return f"<{type(value).__name__} of {size} rows>" if size is not None else f"<{type(value).__name__}>"
    if isinstance(value, PreferenceData):
        return f"<PreferenceData from {value.source}>"
    return repr(value)


def _call(function: str, *args: Any, **kwargs: Any) -> str:
    """The Python call a run records as its command."""
    shown = [_described(a) for a in args] + [f"{k}={_described(v)}" for k, v in kwargs.items()]
    return f"{function}({', '.join(shown)})"


def _nested(cls: type, options: dict[str, Any], *, section: str) -> dict[str, Any]:
    """``options`` as `build` reads ``cls``: the keys of its ``section`` (a nested config) may be given at
    the top level, and are moved under it; a key that both know stays at the top level."""
    section_class = typing.get_type_hints(cls)[section]
    top, inner = known_keys(cls), known_keys(section_class)
    values = {key: value for key, value in options.items() if key in top or key not in inner}
    moved = {key: value for key, value in options.items() if key not in values}
    if moved:
        given = values.get(section, {})
        if not isinstance(given, dict):
            raise ValueError(f"'{section}' must be a mapping")
        values[section] = {**given, **moved}
    return values


def read_dataset(data: Any, *, progress: bool = True, **options: Any) -> PreferenceData:
    """Read a preference dataset into admap's tables (`PreferenceData`: instructions, responses, pairs,
    and every row skipped with its reason).

    ``data``: a file path, a Hugging Face dataset id, ``"demo"``, a pandas DataFrame or a `datasets`
    Dataset. ``options``: `admap map`'s dataset options (``format``, ``split``, ``limit``,
    ``skip_invalid``, ``load={...}``)."""
    table = data if is_table(data) else None
    dataset = "dataframe" if table is not None else str(data)
    return build(InputOptions, {**options, "dataset": dataset}, source="load").read(progress=progress, table=table)


def map_dataset(
    data: Any = "demo",
    *,
    out: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
    **options: Any,
) -> DataMap:
    """Score every response of ``data``, map its instructions, split the regions and write the run folder
    (`admap map`); returns the finished map.

    ``data``: a file path, a Hugging Face dataset id, ``"demo"``, a pandas DataFrame, a `datasets` Dataset,
    or a `PreferenceData` from `read_dataset`. ``out``: the run folder (default ``runs/<dataset name>``; ``name``
    names an in-memory dataset, ``dataframe`` by default). ``options``: `admap map`'s YAML keys, the
    dataset's at the top level (``scorer="judge"``, ``limit=100``, ``judge={"model": "gpt-4o"}``)."""
    in_memory = is_table(data) or isinstance(data, PreferenceData)
    dataset = (name or ("dataframe" if isinstance(data, pd.DataFrame) else "dataset")) if in_memory else str(data)
    values = _nested(MapConfig, {**options, "out": None if out is None else str(out)}, section="input")
    values["input"] = {**values.get("input", {}), "dataset": dataset}
    config = build(MapConfig, values, source="map_dataset")
    loaded = None
    if isinstance(data, PreferenceData):
        loaded = data
    elif in_memory:
        loaded = config.input.read(progress=progress, table=data)
    command = _call("admap.map_dataset", data, out=out, name=name, **options)
    return DataMap.open(run_map(config, progress=progress, command=command, data=loaded))


def open_run(path: str | Path) -> DataMap:
    """The finished map in the run folder ``path`` (written by `admap map` or `map_dataset`)."""
    return DataMap.open(path)


def _read_pairs(path: Path) -> datasets.Dataset:
    import datasets

    with path.open(encoding="utf-8") as handle:
        return datasets.Dataset.from_list([json.loads(line) for line in handle if line.strip()])


@dataclass(frozen=True)
class Diagnosis:
    """`admap diagnose`'s result: ``suspects`` (every pair, ranked by ``suspicion_score``, with
    ``is_suspect``, texts and ratings), ``instructions`` (agreement between labels and scores per
    instruction) and ``summary`` (``diagnosis.json``), all in the folder ``path``."""

    path: Path
    summary: dict
    suspects: pd.DataFrame = field(repr=False)
    instructions: pd.DataFrame = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Diagnosis:
        path = Path(path)
        return cls(
            path,
            json.loads((path / "diagnosis.json").read_text()),
            pd.read_parquet(path / "suspects.parquet"),
            pd.read_parquet(path / "instructions.parquet"),
        )

    def _repr_markdown_(self) -> str:
        summary = self.summary
        shown = self.suspects[self.suspects["is_suspect"]].head(SHOWN_SUSPECTS)
        columns = ["rank", "suspicion_score", "instruction_id", "chosen_rating", "rejected_rating", "margin"]
        return "\n".join(
            [
                f"**Diagnosis** of `{summary['run_dir']}`: the scores contradict {summary['suspect_pairs']} of "
                f"{summary['pairs_scored']} scored pairs (agreement {summary['agreement_rate']:.1%}); "
                f"{summary['instructions_low_impact']} low-impact instructions. Full report: `{self.path}/report.md`.",
                "",
                markdown_table(shown[columns]) if len(shown) else "No pair is contradicted by the scores.",
            ]
        )


@dataclass(frozen=True)
class MapView:
    """The interactive map's page (``path``, one self-contained HTML file); shown inline in Jupyter."""

    path: Path
    height: int = INLINE_HEIGHT_PX

    def _repr_html_(self) -> str:
        # srcdoc keeps the page self-contained in the notebook: no server, and its own content security policy.
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return (
            f'<iframe srcdoc="{page}" title="Alignment Data Map" '
            f'style="width: 100%; height: {self.height}px; border: 0"></iframe>'
        )


@dataclass(frozen=True)
class DataMap:
    """A finished Alignment Data Map: one run folder of `admap map`, read through `MapRun`.

    ``table``: one row per instruction (``mean_score``, ``score_variance``, ``region``, ...);
    ``scores``: one row per response (``alignment_score``, ``rating``, ...); ``regions``: the count of
    instructions per region; ``summary``: the run's ``summary.json``."""

    run: MapRun

    @classmethod
    def open(cls, path: str | Path) -> DataMap:
        return cls(MapRun.open(path))

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def summary(self) -> dict:
        return self.run.summary

    @cached_property
    def table(self) -> pd.DataFrame:
        return self.run.map_table()

    @cached_property
    def scores(self) -> pd.DataFrame:
        return self.run.scores()

    @property
    def regions(self) -> pd.Series:
        counts = self.summary["regions"]
        return pd.Series({region: counts.get(region, 0) for region in (*REGIONS, UNMAPPED)}, name="instructions")

    @property
    def thresholds(self) -> RegionThresholds:
        return RegionThresholds(**self.summary["thresholds"])

    def select(self, strategy: str = HIGH_MEAN, *, progress: bool = True, **options: Any) -> datasets.Dataset:
        """The DPO pairs (TRL's conversational ``prompt``/``chosen``/``rejected``, with ids and scores) of the
        instructions ``strategy`` keeps (`admap select`: written into the run's ``pairs/`` as well).
        ``options``: `admap select`'s YAML keys (``fraction``, ``seed``, ``pair_rule``, ``out``, ...)."""
        values = _nested(SelectConfig, {**options, "strategy": strategy}, section="selection")
        config = build(SelectConfig, {**values, "run_dir": str(self.path)}, source="select")
        command = _call(f"admap.open_run({str(self.path)!r}).select", strategy, **options)
        return _read_pairs(run_select(config, progress=progress, command=command))

    def diagnose(self, *, top: int = 50, out: str | Path | None = None) -> Diagnosis:
        """The pairs whose annotation the scores contradict, ranked (`admap diagnose`, written to
        ``RUN/diagnosis`` unless ``out`` says otherwise)."""
        config = DiagnoseConfig(run_dir=str(self.path), top=top, out=None if out is None else str(out))
        command = _call(f"admap.open_run({str(self.path)!r}).diagnose", top=top, out=out)
        return Diagnosis.open(run_diagnose(config, command=command))

    def neighbours(self, **options: Any) -> Neighbourhoods:
        """Near-duplicate groups and contamination with the evaluation sets (`admap neighbours`, written to
        ``RUN/neighbours`` unless ``out`` says otherwise); ``select(drop_near_duplicates=True,
        drop_contaminated=True)`` then leaves them out. ``options``: its YAML keys (``near_duplicate_threshold``,
        ``against``, ``contamination_threshold``, ...)."""
        config = build(NeighboursConfig, {**options, "run_dir": str(self.path)}, source="neighbours")
        command = _call(f"admap.open_run({str(self.path)!r}).neighbours", **options)
        return MapRun.open(self.path).neighbours(run_neighbours(config, command=command))

    def push_to_hub(self, repo_id: str, **options: Any) -> str:
        """Publish the run as a hub dataset (`admap push`): a configuration per DPO subset in ``pairs/``, the
        map, the figure and a dataset card; returns the commit's URL. ``options``: `admap push`'s
        (``private``, ``revision``, ``commit_message``, ``license``, ``out`` to keep the uploaded folder)."""
        config = build(PushConfig, {**options, "run_dir": str(self.path), "repo_id": repo_id}, source="push_to_hub")
        return run_push(config, command=_call(f"admap.open_run({str(self.path)!r}).push_to_hub", repo_id, **options))

    def plot(self) -> Figure:
        """The map (variance against mean, by region, with each axis's distribution) as a matplotlib Figure;
        ``.savefig(path)`` writes it."""
        title, subtitle = map_titles(self.summary)
        return map_figure(self.table, self.thresholds, title=title, subtitle=subtitle)

    def view(
        self,
        *,
        out: str | Path | None = None,
        max_points: int = INLINE_MAX_POINTS,
        text_budget: int = INLINE_TEXT_BUDGET,
        height: int = INLINE_HEIGHT_PX,
        **options: Any,
    ) -> MapView:
        """The interactive map (`admap view`), shown inline when it is a notebook cell's value; written to
        ``out`` (default ``RUN/view-inline.html``). Fewer points and less text than `admap view` by default,
        since a notebook sends its outputs whole; ``options``: `admap view`'s others (``compare``, ``seed``)."""
        out = Path(out) if out is not None else self.path / "view-inline.html"
        config = ViewConfig(
            run_dir=str(self.path), out=str(out), max_points=max_points, text_budget=text_budget, **options
        )
        return MapView(run_view(config), height=height)

    def __repr__(self) -> str:
        counts = ", ".join(f"{region} {count}" for region, count in self.regions.items())
        return f"DataMap({str(self.path)!r}: {self.summary['scorer']['label']}; {counts})"

    def _repr_html_(self) -> str:
        table = pd.DataFrame(
            {
                "region": [*REGIONS, UNMAPPED],
                "meaning": [*(REGION_LABELS[r] for r in REGIONS), "fewer than 2 scored responses"],
                "instructions": self.regions.to_numpy(),
            }
        )
        return (
            f"<p><b>Alignment Data Map</b> <code>{html.escape(str(self.path))}</code> — score: "
            f"{html.escape(self.run.label)}</p>" + table.to_html(index=False)
        )
