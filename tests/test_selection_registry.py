"""A strategy registered from outside admap, with an option of its own, reaches `admap select` and the
experiments with no other file touched."""

import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import pandas as pd
import pytest

from admap.cli import build_parser, main
from admap.config import option
from admap_baselines import STRATEGIES, SelectionInputs
from admap_baselines.base import top_by
from admap_experiments.config import SelectionOptions
from tests.runs import map_without_models


@dataclass
class ShortestPromptOptions:
    measure: Literal["chars", "words"] = option("chars", "what 'shortest' counts")


@STRATEGIES.register("shortest_prompt")
class ShortestPrompt:
    """The instructions with the fewest characters (or words)."""

    name = "shortest_prompt"
    Options = ShortestPromptOptions

    def __init__(self, options: ShortestPromptOptions):
        self.options = options

    def select(self, inputs: SelectionInputs, *, size: int, seed: int):
        text = inputs.candidates["instruction"]
        length = text.str.len() if self.options.measure == "chars" else text.str.split().str.len()
        return top_by(inputs.candidates, length, size, descending=False)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo set mapped by ROUGE-L against each instruction's best-rated completion."""
    text = resources.files("admap.demo").joinpath("demo_preferences.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    for row in rows:
        row["proxy"] = max(row["completions"], key=lambda c: c["fine-grained_score"])["response"]
    return map_without_models(rows, tmp_path_factory.mktemp("demo"))


def test_admap_select_reaches_a_registered_strategy(demo_run, tmp_path):
    out = tmp_path / "shortest.jsonl"
    assert main(["select", str(demo_run), "--strategy", "shortest_prompt", "--fraction", "0.5", "--out", str(out)]) == 0
    chosen = {json.loads(line)["instruction_id"] for line in out.read_text().splitlines()}
    instructions = pd.read_parquet(demo_run / "map.parquet")
    assert instructions["is_mapped"].sum() == 48
    lengths = sorted(zip(instructions["instruction"].str.len(), instructions["instruction_id"]))
    assert chosen == {instruction_id for _, instruction_id in lengths[:24]}


def test_the_default_output_path_names_strategy_fraction_rule_and_seed(demo_run):
    assert main(["select", str(demo_run), "--strategy", "shortest_prompt", "--fraction", "0.25", "--quiet"]) == 0
    assert (demo_run / "pairs" / "shortest_prompt-f0.25-annotated-seed42.jsonl").exists()


def test_the_experiments_reach_a_registered_strategy(demo_run, tmp_path):
    from admap.config import build
    from admap_experiments.config import ExperimentConfig
    from admap_experiments.run import select_stage, selection_inputs

    assert SelectionOptions(strategy="shortest_prompt").strategy == "shortest_prompt"
    config = build(ExperimentConfig, {"selection": {"strategy": "shortest_prompt", "fraction": 0.5}})
    record = select_stage(selection_inputs(demo_run, config), config, tmp_path, map_run_id=None)
    out = tmp_path / "cli.jsonl"
    assert main(["select", str(demo_run), "--strategy", "shortest_prompt", "--fraction", "0.5", "--out", str(out)]) == 0
    assert (tmp_path / "pairs.jsonl").read_bytes() == out.read_bytes()
    assert record["n_instructions"] == 24


def test_admap_select_help_lists_every_registered_strategy(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["select", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in STRATEGIES.names():
        assert name in out
    assert "shortest_prompt" in out


def test_an_unknown_strategy_gets_close_matches():
    with pytest.raises(KeyError, match="did you mean 'shortest_prompt'"):
        SelectionOptions(strategy="shortest_prompts")


def _words_oracle(run_dir, size):
    instructions = pd.read_parquet(run_dir / "map.parquet")
    counts = sorted(zip(instructions["instruction"].str.split().str.len(), instructions["instruction_id"]))
    return {instruction_id for _, instruction_id in counts[:size]}


def test_the_strategys_own_option_reaches_admap_select_and_the_experiments(demo_run, tmp_path, capsys):
    argv = ["select", str(demo_run), "--strategy", "shortest_prompt", "--fraction", "0.5"]
    out = tmp_path / "words.jsonl"
    assert main([*argv, "--shortest-prompt-measure", "words", "--out", str(out)]) == 0
    chosen = {json.loads(line)["instruction_id"] for line in out.read_text().splitlines()}
    assert chosen == _words_oracle(demo_run, 24)

    from admap.config import build
    from admap_experiments.config import ExperimentConfig
    from admap_experiments.run import select_stage, selection_inputs

    selection = {"strategy": "shortest_prompt", "fraction": 0.5, "shortest_prompt": {"measure": "words"}}
    config = build(ExperimentConfig, {"selection": selection})
    record = select_stage(selection_inputs(demo_run, config), config, tmp_path, map_run_id=None)
    assert (tmp_path / "pairs.jsonl").read_bytes() == out.read_bytes()
    assert record["strategy_options"] == {"measure": "words"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["select", "--help"])
    assert "selection strategy shortest_prompt: what 'shortest' counts" in " ".join(capsys.readouterr().out.split())
