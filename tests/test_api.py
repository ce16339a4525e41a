"""The Python API: tables in memory are mapped as their files are, a finished map is one object whose
methods run the commands, and `import admap` stays light."""

import html
import json
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import admap
from admap.errors import InputError
from tests.runs import map_without_models, topic_rows

TOPICS = [f"topic {k}" for k in range(24)]
# Model-free: ROUGE-L against the rows' own proxy column.
MODEL_FREE = {"scorer": "rouge_l", "load": {"proxy_column": "proxy"}, "generation": {"generator": "none"}}


@pytest.fixture(scope="module")
def rows():
    return topic_rows(TOPICS)


@pytest.fixture(scope="module")
def frame_map(rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "frame"
    return admap.map_dataset(pd.DataFrame(rows), out=out, name="topics", progress=False, plot=False, **MODEL_FREE)


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table[["instruction_id", "instruction", "mean_score", "score_variance", "region"]].reset_index(drop=True)


def test_a_dataframe_maps_as_its_file_does(rows, frame_map, tmp_path):
    cli_run = admap.open_run(map_without_models(rows, tmp_path))
    pd.testing.assert_frame_equal(comparable(frame_map.table), comparable(cli_run.table))
    assert frame_map.summary["dataset"]["source"] == "DataFrame"
    assert frame_map.summary["command"].startswith(f"admap.map_dataset(<DataFrame of {len(rows)} rows>")
    assert frame_map.regions.sum() == len(rows)


def test_a_datasets_dataset_maps_as_the_dataframe_does(rows, frame_map, tmp_path):
    data_map = admap.map_dataset(
        datasets.Dataset.from_list(rows), out=tmp_path / "ds", progress=False, plot=False, view=False, **MODEL_FREE
    )
    pd.testing.assert_frame_equal(comparable(data_map.table), comparable(frame_map.table))
    assert data_map.summary["config"]["input"]["dataset"] == "dataset"


def test_trl_message_lists_in_a_dataframe_made_by_datasets_load_as_lists(tmp_path):
    # Dataset.to_pandas gives NumPy arrays of dicts for list columns; the loader must see lists.
    trl_rows = [
        {
            "prompt": [{"role": "user", "content": f"Name colour {k}."}],
            "chosen": [{"role": "assistant", "content": f"Colour {k} is blue."}],
            "rejected": [{"role": "assistant", "content": "I cannot."}],
        }
        for k in range(6)
    ]
    frame = datasets.Dataset.from_list(trl_rows).to_pandas()
    assert isinstance(frame["chosen"].iloc[0], np.ndarray)
    data = admap.read_dataset(frame, progress=False)
    assert len(data.instructions) == 6
    assert sorted(data.responses["response"].unique()) == sorted(
        {"I cannot.", *(f"Colour {k} is blue." for k in range(6))}
    )


def test_a_missing_value_in_a_dataframe_is_an_error_naming_the_row_and_field(rows):
    frame = pd.DataFrame(rows)
    frame.loc[3, "instruction"] = None
    with pytest.raises(InputError) as error:
        admap.read_dataset(frame, progress=False)
    assert "DataFrame" in str(error.value) and "row 4" in str(error.value) and "instruction" in str(error.value)
    data = admap.read_dataset(frame, skip_invalid=True, progress=False)
    assert [s.row for s in data.skipped] == [4]
    assert len(data.instructions) == len(rows) - 1


def test_a_column_of_numbers_and_text_mixed_is_read_value_by_value(rows):
    frame = pd.DataFrame(rows[:4]).assign(note=[1, "two", None, 4.5])
    data = admap.read_dataset(frame, progress=False)
    assert len(data.instructions) == 4


def test_select_returns_the_pairs_select_writes(frame_map):
    pairs = frame_map.select("high_mean", progress=False)
    assert isinstance(pairs, datasets.Dataset)
    written = [json.loads(line) for line in (frame_map.path / "pairs" / "high_mean.jsonl").read_text().splitlines()]
    assert pairs.to_list() == written
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names)


def test_select_takes_the_selection_options_at_the_top_level(frame_map):
    pairs = frame_map.select("random", fraction=0.5, seed=3, progress=False)
    assert len(set(pairs["instruction_id"])) == round(0.5 * frame_map.regions.drop("unmapped").sum())


def test_an_unknown_option_is_refused_by_name(frame_map, rows, tmp_path):
    with pytest.raises(ValueError, match="fractoin"):
        frame_map.select("random", fractoin=0.5)
    with pytest.raises(ValueError, match="scorre"):
        admap.map_dataset(pd.DataFrame(rows), out=tmp_path / "x", scorre="rouge_l")


def test_diagnose_returns_the_ranked_suspects(frame_map):
    diagnosis = frame_map.diagnose(top=5)
    assert diagnosis.path == frame_map.path / "diagnosis"
    assert len(diagnosis.suspects) == diagnosis.summary["pairs"]
    assert list(diagnosis.suspects["rank"]) == sorted(diagnosis.suspects["rank"])
    assert "the scores contradict" in diagnosis._repr_markdown_()


def test_plot_returns_a_figure_and_leaves_pyplot_alone(frame_map, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    figure = frame_map.plot()
    assert isinstance(figure, Figure)
    assert plt.get_fignums() == [] and matplotlib.get_backend() == backend
    figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 10_000
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any(f"(n={frame_map.regions['high_mean']})" in label for label in legend)


def test_view_is_the_page_inline_in_an_iframe(frame_map):
    shown = frame_map.view()
    assert shown.path == frame_map.path / "view-inline.html"
    markup = shown._repr_html_()
    assert markup.startswith('<iframe srcdoc="')
    page = html.unescape(markup.split('srcdoc="', 1)[1].split('" title=', 1)[0])
    assert page == shown.path.read_text(encoding="utf-8")
    # A rerun of the map into the folder is not refused because of the notebook's page.
    assert admap.open_run(frame_map.path).summary["run_id"] == frame_map.summary["run_id"]


def test_the_map_shows_its_regions(frame_map):
    assert repr(frame_map).startswith(f"DataMap('{frame_map.path}'")
    markup = frame_map._repr_html_()
    for region, count in frame_map.regions.items():
        assert f"<td>{region}</td>" in markup and f"<td>{count}</td>" in markup


def test_import_admap_loads_no_model_library():
    code = "import sys, admap; print(sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        admap.nothing  # noqa: B018
