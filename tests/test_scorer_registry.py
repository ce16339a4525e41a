"""A scorer registered from outside admap, with options, a label, a report and a table of its own,
reaches `admap map` (flags, YAML, summary.json, the run's files), the viewer and compare-scorers
with no other file touched."""

import json
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from admap.cli import build_parser, main
from admap.config import option
from admap.run_folder import MapRun
from admap.score import SCORERS, ScorerDefaults, ScoringContext

WORD = re.compile(r"\w+")


@dataclass
class WordOverlapOptions:
    lowercase: bool = option(True, "compare words case-insensitively")
    weight: float = option(1.0, "factor on the overlap")


@SCORERS.register("word_overlap")
@dataclass
class WordOverlap(ScorerDefaults):
    """The share of a response's distinct words that its instruction also uses, times ``weight``."""

    name: ClassVar[str] = "word_overlap"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = WordOverlapOptions

    options: WordOverlapOptions
    overlaps: pd.DataFrame | None = None

    @classmethod
    def from_options(cls, options: WordOverlapOptions, context: ScoringContext) -> "WordOverlap":
        return cls(options)

    def words(self, text: str) -> set[str]:
        return set(WORD.findall(text.lower() if self.options.lowercase else text))

    def score(self, instructions, responses, *, preferences=None):
        prompts = responses["instruction_id"].map(instructions.set_index("instruction_id")["instruction"])
        shares = [
            len(self.words(text) & self.words(prompt)) / max(len(self.words(text)), 1)
            for text, prompt in zip(responses["response"], prompts)
        ]
        self.overlaps = pd.DataFrame({"response_id": responses["response_id"], "overlap": shares})
        return self.options.weight * np.asarray(shares, dtype=np.float32)

    def label(self) -> str:
        return f"{self.name} ({'lowercased' if self.options.lowercase else 'case-sensitive'})"

    def report(self) -> dict:
        return {"weight": self.options.weight, "responses_with_overlap": int((self.overlaps["overlap"] > 0).sum())}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"word_overlap.parquet": self.overlaps}


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_map_help_shows_the_scorer_and_its_options(capsys):
    text = help_text("map", capsys)
    assert "--word-overlap-lowercase" in text and "--word-overlap-weight" in text
    assert "scorer word_overlap: factor on the overlap" in text
    assert "scorers (--scorer): " in text and "word_overlap" in text.split("scorers (--scorer): ")[1]


@pytest.fixture(scope="module")
def overlap_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("overlap") / "run"
    argv = ["map", "--scorer", "word_overlap", "--no-word-overlap-lowercase", "--word-overlap-weight", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


def test_the_run_records_the_scorers_options_label_report_and_table(overlap_run):
    run = MapRun.open(overlap_run)
    summary = run.summary
    assert summary["config"]["scorer"] == "word_overlap"
    assert summary["config"]["word_overlap"] == {"lowercase": False, "weight": 2.0}
    table = pd.read_parquet(overlap_run / "word_overlap.parquet")
    scores = run.scores().merge(table, on="response_id")
    assert np.allclose(scores["alignment_score"], 2 * scores["overlap"])
    assert summary["scorer"] == {
        "name": "word_overlap",
        "label": "word_overlap (case-sensitive)",
        "weight": 2.0,
        "responses_with_overlap": int((table["overlap"] > 0).sum()),
    }
    assert "word_overlap.parquet" in summary["files"]
    # Lowercased, words match at least as often, and more often somewhere: the option reached the scorer.
    responses = run.scores()
    lowered = WordOverlap(WordOverlapOptions(lowercase=True)).score(run.map_table(), responses)
    case_sensitive = table.set_index("response_id")["overlap"].reindex(responses["response_id"]).to_numpy()
    assert (lowered >= case_sensitive - 1e-6).all() and (lowered > case_sensitive + 1e-6).any()


def test_a_yaml_config_sets_the_same_options(overlap_run, tmp_path):
    config = tmp_path / "overlap.yaml"
    config.write_text("scorer: word_overlap\nword_overlap: {lowercase: false, weight: 2}\n")
    out = tmp_path / "from-yaml"
    assert main(["map", "--config", str(config), "--out", str(out), "--no-view", "--no-plot", "--quiet"]) == 0
    assert MapRun.open(out).scores().equals(MapRun.open(overlap_run).scores())


def test_the_viewer_and_compare_scorers_use_the_label(overlap_run, tmp_path):
    html = (overlap_run / "view.html").read_text()
    assert "word_overlap (case-sensitive)" in html
    annotation = tmp_path / "annotation"
    assert main(["map", "--scorer", "annotation", "--out", str(annotation), "--no-view", "--no-plot", "--quiet"]) == 0
    page = tmp_path / "page.html"
    assert main(["view", str(annotation), "--compare", str(overlap_run), "--out", str(page), "--quiet"]) == 0
    assert "region by scorer word_overlap (case-sensitive)" in page.read_text()
    compared = tmp_path / "compare"
    assert main(["compare-scorers", str(overlap_run), str(annotation), "--out", str(compared), "--quiet"]) == 0
    agreement = pd.read_csv(compared / "agreement.csv")
    assert agreement[["scorer_a", "scorer_b"]].values.tolist() == [["word_overlap (case-sensitive)", "annotation"]]


def test_a_rerun_replaces_a_folder_holding_the_scorers_table(overlap_run):
    first = MapRun.open(overlap_run).run_id
    assert main(["map", "--scorer", "word_overlap", "--out", str(overlap_run), "--no-view", "--quiet"]) == 0
    rerun = MapRun.open(overlap_run)
    assert rerun.run_id != first and rerun.summary["scorer"]["label"] == "word_overlap (lowercased)"


def test_the_options_of_another_scorer_stay_out_of_the_summary(tmp_path):
    out = tmp_path / "run"
    argv = ["map", "--scorer", "annotation", "--word-overlap-weight", "3", "--out", str(out), "--no-view", "--quiet"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "word_overlap" not in summary["config"] and summary["scorer"] == {
        "name": "annotation",
        "label": "annotation",
    }
