"""Experiment configs: recipes validate against the dataclasses (TRL's and peft's fields included),
flags override YAML key by key, run ids are unique per configuration, sweeps expand as declared."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("trl")

from admap.config import build  # noqa: E402
from admap_experiments.config import ExperimentConfig  # noqa: E402
from admap_experiments.run import load_config  # noqa: E402
from admap_experiments.sweep import SweepConfig, expand, load_sweep  # noqa: E402
from admap_experiments.tracking import redacted  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _sweep(path: Path) -> SweepConfig:
    return load_sweep(str(path))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_recipe_validates(path):
    config = build(ExperimentConfig, yaml.safe_load(path.read_text()), source=str(path))
    assert config.name == path.stem


@pytest.mark.parametrize("path", sorted((CONFIGS / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_recipe_expands(path):
    sweep = _sweep(path)
    assert (CONFIGS / f"{sweep.name}.yaml").exists()
    configs = expand(sweep, source=str(path))
    strategies = sweep.grid["selection.strategy"]
    assert [c.selection.strategy for c in configs] == strategies * len(sweep.seeds or [None])
    assert len({c.run_id() for c in configs}) == len(configs)
    assert all(c.name == sweep.name for c in configs)


def test_paper_recipe_keeps_the_handbook_hyperparameters():
    (config, *_) = expand(_sweep(CONFIGS / "sweeps" / "paper-ultrafeedback.yaml"), source="paper")
    assert config.train.dpo["beta"] == 0.01 and config.train.dpo["learning_rate"] == 5e-7
    assert config.map.generation.generator_model == "gpt-4o-2024-11-20"
    assert config.evaluation.judge == "generate"


def _write(tmp_path, values) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_flags_override_one_key_of_a_yaml_section(tmp_path):
    path = _write(tmp_path, {"train": {"dpo": {"max_steps": 8, "beta": 0.1}}, "selection": {"strategy": "random"}})
    config, _ = load_config([path, "--train-dpo", "{max_steps: 2}", "--strategy", "high_variance", "--fraction", "0.2"])
    assert config.train.dpo == {"max_steps": 2, "beta": 0.1}
    assert config.selection.strategy == "high_variance" and config.selection.fraction == 0.2


def test_map_flags_are_prefixed_and_the_dataset_is_a_flag(tmp_path):
    config, _ = load_config(["--map-dataset", "demo", "--map-scorer", "rouge_l", "--stages", "select", "train"])
    assert config.map.input.dataset == "demo" and config.map.scorer == "rouge_l"
    assert config.stages == ["select", "train"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"trian": {}}, "unknown key"),
        ({"train": {"dpo": {"learnig_rate": 1e-5}}}, "did you mean 'learning_rate'"),
        ({"train": {"dpo": {"output_dir": "x"}}}, "set by the runner"),
        ({"train": {"lora": {"rank": 8}}}, "not a field of peft.LoraConfig"),
        ({"selection": {"strategy": "high_mean_region"}}, "did you mean"),
        ({"selection": {"fraction": 1.5}}, "fraction must be in (0, 1]"),
        ({"stages": ["select", "deploy"]}, "unknown ['deploy']"),
        ({"evaluation": {"mt_bench_questions": 0}}, "mt_bench_questions must be >= 1"),
        ({"wandb": {"mode": "cloud"}}, "wandb.mode"),
    ],
)
def test_bad_configs_are_refused_by_name(values, message):
    with pytest.raises((ValueError, KeyError)) as error:
        build(ExperimentConfig, values, source="test.yaml")
    assert message in str(error.value)


def test_run_ids_follow_the_configuration_and_nothing_else():
    base = {"selection": {"strategy": "random"}, "train": {"dpo": {"max_steps": 4}}}
    a = build(ExperimentConfig, base)
    same = build(ExperimentConfig, base | {"name": "other", "wandb": {"mode": "disabled"}})
    other_seed = build(ExperimentConfig, base | {"selection": {"strategy": "random", "seed": 7}})
    other_steps = build(ExperimentConfig, base | {"train": {"dpo": {"max_steps": 5}}})
    assert a.run_id() == same.run_id()
    assert len({a.run_id(), other_seed.run_id(), other_steps.run_id()}) == 3
    assert a.run_id().startswith("random-region-reference-seed42-")
    assert a.map_fingerprint() == other_steps.map_fingerprint()


def test_where_texts_are_embedded_does_not_name_a_new_map():
    def fingerprint(embedding):
        return build(ExperimentConfig, {"map": {"embedding": embedding}}).map_fingerprint()

    local = fingerprint({})
    assert fingerprint({"engine": "ray", "ray_actors": 4, "embedding_cache_dir": "/scratch"}) == local
    assert fingerprint({"embed_precision": "bf16"}) != local


def test_sweep_crosses_the_grid_with_seeds():
    sweep = build(
        SweepConfig,
        {
            "name": "s",
            "base": {"train": {"dpo": {"max_steps": 1}}},
            "grid": {"selection.strategy": ["random", "high_mean"], "selection.fraction": [0.2, 0.3]},
            "seeds": [1, 2, 3],
        },
    )
    configs = expand(sweep, source="s")
    assert len(configs) == 12
    assert {(c.selection.strategy, c.selection.fraction, c.selection.seed) for c in configs} == {
        (s, f, seed) for s in ("random", "high_mean") for f in (0.2, 0.3) for seed in (1, 2, 3)
    }
    with pytest.raises(ValueError, match=r"grid.selection.strategy: expected a non-empty list"):
        build(SweepConfig, {"name": "s", "base": {}, "grid": {"selection.strategy": "random"}})
    bad = build(SweepConfig, {"name": "s", "base": {}, "grid": {"selection.stratgy": ["random"]}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['stratgy'\]"):
        expand(bad, source="s")


def test_seeds_set_every_seed_field():
    sweep = build(
        SweepConfig,
        {
            "name": "s",
            "base": {"train": {"dpo": {"max_steps": 1, "seed": 5}}},
            "grid": {"selection.strategy": ["random", "full"]},
            "seeds": [1, 2],
            "seed_fields": ["selection.seed", "train.dpo.seed"],
        },
    )
    configs = expand(sweep, source="s")
    assert sorted((c.selection.strategy, c.selection.seed, c.train.dpo["seed"]) for c in configs) == [
        ("full", 1, 1), ("full", 2, 2), ("random", 1, 1), ("random", 2, 2)
    ]  # fmt: skip
    assert all(c.train.dpo["max_steps"] == 1 for c in configs)


def test_strategy_summary_is_the_mean_and_t_interval_over_seeds(tmp_path):
    from admap_experiments.sweep import plot_sweep, strategy_summary

    rows = pd.DataFrame(
        {
            "strategy": ["random"] * 3 + ["high_mean"] * 3,
            "fraction": [0.25] * 6,
            "seed": [1, 2, 3] * 2,
            "n_pairs": [50] * 6,
            "preference_accuracy": [0.50, 0.56, 0.59, 0.60, 0.60, 0.60],
            "preference_accuracy_low": [0.4] * 6,
            "preference_accuracy_high": [0.7] * 6,
        }
    )
    summary = strategy_summary(rows).set_index("strategy")
    values = np.array([0.50, 0.56, 0.59])
    half = 4.302652729911275 * values.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert summary.loc["random", "preference_accuracy"] == pytest.approx(values.mean())
    assert summary.loc["random", "preference_accuracy_low"] == pytest.approx(values.mean() - half)
    assert summary.loc["random", "preference_accuracy_high"] == pytest.approx(values.mean() + half)
    assert summary.loc["high_mean", "preference_accuracy_std"] == 0 and summary.loc["high_mean", "seeds"] == 3
    figure = plot_sweep(rows, tmp_path / "sweep.png", title="t")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_differences_compare_the_same_pairs_seed_by_seed():
    from admap_experiments.sweep import paired_differences

    def outcomes(correct):
        ids = [f"i{k}" for k in range(len(correct))]
        return pd.DataFrame({"instruction_id": ids, "chosen_id": ids, "rejected_id": ids, "reward_correct": correct})

    rows = pd.DataFrame(
        {"strategy": ["random", "random", "high_mean", "high_mean"], "seed": [1, 2, 1, 2], "run_id": list("abcd")}
    )
    tables = {
        "a": outcomes([1.0, 0.0, 1.0, 0.0]),
        "b": outcomes([0.0, 0.0, 1.0, 1.0]),
        "c": outcomes([1.0, 1.0, 1.0, 0.0]),
        # Another order of the same pairs: they are matched by ids, not by position.
        "d": outcomes([1.0, 0.0, 1.0, 1.0]).iloc[::-1],
    }
    (row,) = paired_differences(rows, tables).to_dict("records")
    # Per pair, averaged over the two seeds: (0 + 1) / 2, (1 + 0) / 2, 0, 0.
    assert row["strategy"] == "high_mean" and row["seeds"] == 2 and row["held_out_pairs"] == 4
    assert row["accuracy_difference"] == pytest.approx(0.25)
    assert 0 <= row["accuracy_difference_low"] <= 0.25 <= row["accuracy_difference_high"] <= 0.5


def test_held_out_pairs_cannot_be_split_from_a_map_built_already():
    with pytest.raises(ValueError, match="held_out.dataset instead"):
        build(ExperimentConfig, {"map_run": "runs/demo", "held_out": {"fraction": 0.2}})
    with pytest.raises(ValueError, match="not both"):
        build(ExperimentConfig, {"held_out": {"fraction": 0.2, "dataset": "x.jsonl"}})
    with pytest.raises(ValueError, match=r"held_out.fraction must be in \[0, 1\)"):
        build(ExperimentConfig, {"held_out": {"fraction": 1.0}})
    plain = build(ExperimentConfig, {})
    split = build(ExperimentConfig, {"held_out": {"fraction": 0.2}})
    assert split.map_fingerprint() != plain.map_fingerprint()  # a map of the rest is another map


def test_secrets_never_reach_tracked_configs():
    values = {
        "judge_generation": {"api_key_env": "OPENAI_API_KEY", "base_url": "https://user:sk-live-123@api.example/v1"},
        "extra": {"wandb_api_key": "abc", "hf_token": "hf_x", "items": [{"password": "p"}]},
    }
    clean = redacted(values)
    assert clean["judge_generation"]["api_key_env"] == "OPENAI_API_KEY"
    assert "sk-live-123" not in str(clean) and "abc" not in str(clean) and "hf_x" not in str(clean)
    assert clean["extra"]["items"][0]["password"] == "***"


def test_sweep_results_are_a_table_a_markdown_view_and_a_figure(tmp_path):
    from admap_experiments.sweep import write_sweep_results

    sweep = build(SweepConfig, {"name": "toy", "base": {}, "results": str(tmp_path), "description": "Read me."})
    rows = [
        {"strategy": s, "fraction": None, "seed": 42, "dataset": "demo", "model": "smollm2", "judge": "logprob:x"}
        | {"mt_bench_score": score, "mt_bench_score_se": 0.5, "evol_win_rate": 0.5 + score / 100}
        for s, score in (("full", 6.0), ("high_mean", 6.5), ("random", 5.5))
    ]
    path = write_sweep_results(sweep, pd.DataFrame(rows), command="python -m admap_experiments.sweep toy")
    table = (tmp_path / "toy.md").read_text()
    assert path == tmp_path / "toy.csv" and (tmp_path / "toy.png").stat().st_size > 0
    assert "python -m admap_experiments.sweep toy" in table and "Read me." in table and "![toy](toy.png)" in table
    assert "| high_mean |  | 42 | 6.5 | 0.5 | 0.565 |" in table
