import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from admap.cli import build_parser, main
from admap.commands.map import MapConfig
from admap.commands.proxy import ProxyConfig
from admap.commands.select import SelectConfig
from admap.config import from_arguments
from admap.inputs import demo_dataset_path


def _config(argv):
    namespace = build_parser().parse_args(argv)
    if hasattr(namespace, "quiet"):
        del namespace.quiet
    return from_arguments(
        {"map": MapConfig, "select": SelectConfig, "proxy": ProxyConfig}[namespace.command], namespace
    )


def test_flags_come_from_the_dataclass():
    config = _config(
        [
            "map",
            "data.jsonl",
            "--rating-field",
            "helpfulness",
            "--region-method",
            "quantile",
            "--variance-quantile",
            "0.5",
            "--no-plot",
            "--skip-invalid",
        ]
    )
    assert config.input.dataset == "data.jsonl"
    assert config.input.load.rating_field == "helpfulness"
    assert config.region_method == "quantile" and config.variance_quantile == 0.5
    assert config.plot is False and config.input.skip_invalid is True
    assert _config(["map"]).input.dataset == "demo"


def test_yaml_gives_defaults_flags_win_unknown_keys_refused(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump({"input": {"dataset": "x.jsonl", "load": {"rating_field": "honesty"}}, "seed": 7}))
    config = _config(["map", "--config", str(path), "--seed", "9", "--temperature", "0.5"])
    assert (config.input.dataset, config.seed, config.input.load.rating_field) == ("x.jsonl", 9, "honesty")
    assert config.generation.temperature == 0.5
    path.write_text(yaml.safe_dump({"input": {"dataset": "x.jsonl"}, "sede": 7}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sede'\]"):
        _config(["map", "--config", str(path)])


def test_select_takes_the_experiments_selection_options(tmp_path):
    config = _config(["select", "run", "--strategy", "longest", "--fraction", "0.25", "--seed", "7"])
    assert (config.selection.strategy, config.selection.fraction, config.selection.seed) == ("longest", 0.25, 7)
    path = tmp_path / "select.yaml"
    selection = {"strategy": "random", "fraction": 0.5}
    path.write_text(yaml.safe_dump({"run_dir": "run", "selection": selection, "pair_rule": "best_vs_random"}))
    config = _config(["select", "run", "--config", str(path), "--seed", "3"])
    assert (config.selection.strategy, config.selection.fraction, config.selection.seed) == ("random", 0.5, 3)
    assert config.default_out(Path("run")) == Path("run/pairs/random-f0.5-best_vs_random-seed3.jsonl")
    assert _config(["select", "run"]).default_out(Path("run")) == Path("run/pairs/high_mean-annotated-seed42.jsonl")
    with pytest.raises(KeyError, match="did you mean 'longest'"):
        _config(["select", "run", "--strategy", "longst"])
    with pytest.raises(ValueError, match=r"selection.fraction must be in \(0, 1\], got 1.5"):
        _config(["select", "run", "--fraction", "1.5"])


def test_invalid_values_are_refused_by_name():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["map", "--region-method", "thirds"])
    with pytest.raises(ValueError, match="variance_threshold"):
        MapConfig(region_method="absolute")
    with pytest.raises(KeyError, match="did you mean 'reference'"):
        MapConfig(scorer="refrence")


def test_bad_input_exits_2_with_the_location(tmp_path, caplog):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"instruction": "a", "chosen": "x", "rejected": "y"}\n{"instruction": "b", "chosen": 3, "rejected": "y"}\n'
    )
    assert main(["map", str(bad), "--out", str(tmp_path / "run"), "--quiet", "--generator", "none"]) == 2
    assert f"{bad}, row 2, field 'chosen'" in caplog.text


def test_demo_set_ships_with_the_package():
    rows = [json.loads(line) for line in Path(demo_dataset_path()).read_text().splitlines()]
    assert len(rows) >= 40
    ratings = {c["fine-grained_score"] for r in rows for c in r["completions"]}
    assert ratings == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert all(2 <= len(r["completions"]) <= 4 for r in rows)


@pytest.mark.slow
def test_default_command_end_to_end(tmp_path):
    """`admap map` on the demo set with the offline models: every artefact, counts that add up."""
    run_dir = tmp_path / "demo"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "admap.cli",
            "map",
            "--out",
            str(run_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name in ("scores.parquet", "map.parquet", "proxies.jsonl", "map.png", "summary.json"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    scores = pd.read_parquet(run_dir / "scores.parquet")
    map_table = pd.read_parquet(run_dir / "map.parquet")
    dataset = summary["dataset"]
    assert dataset["rows_read"] == dataset["instructions"] + dataset["rows_skipped"]
    assert dataset["responses_read"] == len(scores) + dataset["responses_skipped"] + dataset["responses_merged"]
    assert scores["alignment_score"].between(-1, 1).all()
    assert summary["proxies"] == {"generated:SmolLM2-135M-Instruct": len(map_table)}
    n = int(map_table["is_mapped"].sum())
    assert summary["regions"]["high_variance"] == n - 2 * n // 3
    assert sum(summary["regions"].values()) == len(map_table)
    for subset in ("high_mean", "low_mean", "high_variance", "random", "full"):
        lines = (run_dir / "pairs" / f"{subset}.jsonl").read_text().splitlines()
        assert len(lines) == summary["pairs"][subset]["pairs"]
        record = json.loads(lines[0])
        assert record["prompt"][0]["role"] == "user" and record["chosen"][0]["role"] == "assistant"
    assert summary["pairs"]["random"]["instructions"] == summary["pairs"]["high_mean"]["instructions"]
    # Pairs follow the ratings: chosen rated above rejected.
    rating = scores.set_index("response_id")["rating"]
    for line in (run_dir / "pairs" / "full.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert rating[record["chosen_id"]] > rating[record["rejected_id"]]

    # The proxies a run wrote are reusable: a rerun from them needs no generator and scores the same.
    rerun = tmp_path / "rerun"
    assert (
        main(
            [
                "map",
                "--out",
                str(rerun),
                "--proxy-file",
                str(run_dir / "proxies.jsonl"),
                "--generator",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    rescored = pd.read_parquet(rerun / "scores.parquet")
    assert (rescored["alignment_score"] == scores["alignment_score"]).all()
    assert json.loads((rerun / "summary.json").read_text())["proxies"] == {"file": len(map_table)}

    # A rerun with the same cache asks the model nothing and writes the same proxies.
    cached = tmp_path / "cached"
    assert main(["map", "--out", str(cached), "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert (cached / "proxies.jsonl").read_bytes() == (run_dir / "proxies.jsonl").read_bytes()
    generation = json.loads((cached / "summary.json").read_text())["generation"]
    assert generation["cache_hits"] == generation["requests"] == len(map_table)

    out = run_dir / "bv.jsonl"
    assert (
        main(
            [
                "select",
                str(run_dir),
                "--strategy",
                "random",
                "--pair-rule",
                "best_vs_random",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) <= summary["pairs"]["random"]["instructions"]


@pytest.mark.slow
def test_pair_dataset_keeps_its_own_pairs_through_map_and_select(tmp_path, hh_rlhf_path):
    """HH-RLHF pairs, proxies from a side file keyed by instruction text: the DPO pairs are the dataset's own."""
    from admap.load import load_preferences

    data = load_preferences(str(hh_rlhf_path), skip_invalid=True, limit=60, progress=False)
    side = tmp_path / "proxies.jsonl"
    # A stand-in proxy (the last user turn) keyed by instruction text, the way other tools write them.
    side.write_text(
        "".join(
            json.dumps({"instruction": row.instruction, "proxy": json.loads(row.prompt_messages)[-1]["content"]}) + "\n"
            for row in data.instructions.itertuples()
        )
    )
    run_dir = tmp_path / "hh"
    argv = [
        "map",
        str(hh_rlhf_path),
        "--limit",
        "60",
        "--skip-invalid",
        "--proxy-file",
        str(side),
        "--generator",
        "none",
        "--out",
        str(run_dir),
        "--quiet",
    ]
    assert main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["proxies"] == {"file": len(data.instructions)}
    full = [json.loads(line) for line in (run_dir / "pairs" / "full.jsonl").read_text().splitlines()]
    texts = data.responses.set_index("response_id")["response"]
    expected = {(texts[p.chosen_id], texts[p.rejected_id]) for p in data.preferences.itertuples()}
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in full} == expected
    assert all(r["prompt"][-1]["role"] == "user" for r in full)

    out = tmp_path / "high_mean.jsonl"
    assert main(["select", str(run_dir), "--strategy", "high_mean", "--out", str(out), "--quiet"]) == 0
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    assert selected == [json.loads(line) for line in (run_dir / "pairs" / "high_mean.jsonl").read_text().splitlines()]
    map_table = pd.read_parquet(run_dir / "map.parquet").set_index("instruction_id")
    assert {r["instruction_id"] for r in selected} <= set(map_table.index[map_table["region"] == "high_mean"])


def test_each_generator_brings_its_own_default_model():
    from admap.generate.options import GeneratorOptions

    assert _config(["proxy"]).generation.generator_model == "SmolLM2-135M-Instruct"
    assert _config(["proxy", "--generator", "openai"]).generation.generator_model == "gpt-4o-2024-11-20"
    assert _config(["proxy", "--generator", "openai", "--generator-model", "m"]).generation.generator_model == "m"
    with pytest.raises(ValueError, match="needs generator_model"):
        GeneratorOptions(generator="vllm")
    with pytest.raises(ValueError, match="needs a generator"):
        _config(["proxy", "--generator", "none"])


@pytest.mark.parametrize("command", ["map", "select", "proxy", "compare-scorers", "diagnose", "view", "bench"])
def test_every_command_prints_its_help(command, capsys):
    # argparse %-formats help strings: a help text with a literal "%" once crashed `admap map --help`.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--quiet" in out
    if command == "map":
        assert "5% of them" in out


def test_experiments_run_prints_its_help(capsys):
    from admap_experiments.run import build_parser as experiment_parser

    with pytest.raises(SystemExit) as exit_info:
        experiment_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert "5% of them" in " ".join(capsys.readouterr().out.split())
