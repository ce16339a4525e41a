"""The authors' run as a recipe: every row of experiments/README.md's settings table is the recipe's value,
the CPU variant sets the same keys, and the CPU variant runs every stage end to end on raw UltraFeedback."""

import json
import re
from pathlib import Path

import pytest
import yaml
from ultrafeedback_raw import write_fixture

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
# What the CPU variant adds: a step limit, the first questions of each benchmark, a seed for local sampling.
CPU_ONLY_KEYS = {
    "train.dpo.max_steps",
    "evaluation.mt_bench_questions",
    "evaluation.evol_instruct_questions",
    # The local proxy model samples at temperature 1 too: seeded, its replies are reproducible.
    "map.generation.generation_seed",
}


def flat(mapping, prefix=""):
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and key not in ("lora",):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe(name):
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def settings_table():
    """``(key, value)`` of each row of the README's settings table."""
    text = (ROOT / "experiments" / "README.md").read_text()
    section = text.split("## The authors' run, setting by setting")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return [(re.sub(r"`", "", row[2]).strip(), row[3].rstrip(" |").strip()) for row in rows]


def test_the_settings_table_is_the_recipe():
    values = flat(recipe("paper-authors"))
    table = settings_table()
    assert len(table) >= 25
    for key, shown in table:
        assert key in values, key
        if shown.startswith("`"):
            assert yaml.safe_load(shown.strip("`")) == values[key], key
        else:  # a quoted text, shortened in the table
            assert str(values[key]).startswith(shown.strip('"').rstrip("…").strip()), key


def test_the_cpu_variant_sets_the_same_keys_and_both_build():
    from admap.config import build
    from admap_experiments.config import ExperimentConfig

    full, cpu = flat(recipe("paper-authors")), flat(recipe("paper-authors-cpu"))
    assert set(cpu) - set(full) == CPU_ONLY_KEYS
    assert set(full) <= set(cpu)
    for name in ("paper-authors", "paper-authors-cpu"):
        config = build(ExperimentConfig, recipe(name))
        assert config.map.input.load.principle == "helpfulness" and config.selection.strategy == "high_mean"
        assert config.train.lora == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}


@pytest.mark.slow
def test_the_cpu_variant_runs_every_stage(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from admap_experiments.run import main

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("ADMAP_CACHE", str(tmp_path / "cache"))
    data, _, rows = write_fixture(tmp_path)
    out = tmp_path / "experiments"
    argv = [str(CONFIGS / "paper-authors-cpu.yaml"), "--map-dataset", str(data), "--out", str(out), "--quiet"]
    monkeypatch.chdir(ROOT)  # the recipe names the shipped benchmark data relative to the repository
    assert main(argv) == 0
    (run_dir,) = (out / "paper-authors-cpu" / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    # The map folder, beside its writer's lock file.
    (map_dir,) = [path for path in (out / "paper-authors-cpu" / "maps").iterdir() if path.is_dir()]
    summary = json.loads((map_dir / "summary.json").read_text())
    helpful = sum(
        all(c["principle"] == "helpfulness" for c in r["completions"]) and len(r["completions"]) == 4 for r in rows
    )
    dataset = summary["dataset"]
    assert (
        dataset["rows_filtered"] == len(rows) - helpful
        and dataset["rows_loaded"] + dataset["rows_duplicate"] == helpful
    )
    assert summary["config"]["generation"]["system_prompt"].startswith("The assistant should provide users")
    train = json.loads((run_dir / "train.json").read_text())
    assert train["validation_pairs"] >= 1 and "eval_loss" in train
    assert (run_dir / "adapter").is_dir() and (run_dir / "model").is_dir()
    # Single grading and pairwise against the generated baseline, on both benchmarks.
    assert {"mt_bench_score", "mt_bench_pair_win_rate", "evol_win_rate"} <= set(result)
    baseline = list((out / "paper-authors-cpu" / "reference").rglob("model_answer/*.jsonl"))
    assert {path.name for path in baseline} == {"smollm2.jsonl"}
