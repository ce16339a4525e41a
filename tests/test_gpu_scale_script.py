"""benchmarks/gpu_scale.py end to end on a tiny size on the CPU, so that its one GPU run finds no bug
the CPU could have found: the synthetic data loads as UltraFeedback, every response is scored, the
cached rerun encodes nothing, and the record holds every field the summary reads."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_scale.py"


def load_script(name: str = "gpu_scale"):
    """A benchmark script as a module (benchmarks/ is no package); registered first, as dataclasses need."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_synthetic_texts_are_distinct_and_follow_the_length_model(tmp_path):
    gpu_scale = load_script()
    vocabulary = gpu_scale.read_vocabulary(None)
    data = gpu_scale.write_synthetic_data(300, tmp_path, vocabulary, seed=3, peer_texts=50)
    records = [json.loads(line) for line in data.dataset.read_text().splitlines()]
    proxies = [json.loads(line) for line in data.proxies.read_text().splitlines()]
    texts = [r["instruction"] for r in records] + [c["response"] for r in records for c in r["completions"]]
    texts += [p["proxy_response"] for p in proxies]
    assert len(texts) == 300 * 6 and len(set(texts)) == len(texts)
    assert [p["instruction"] for p in proxies] == [r["instruction"] for r in records]
    assert all(len(r["completions"]) == 4 and len({c["model"] for c in r["completions"]}) == 4 for r in records)
    assert len(data.peer_texts) == 50 and set(data.peer_texts) <= set(texts[300:])
    completion_words = [len(c["response"].split()) for r in records for c in r["completions"]]
    assert 200 <= np.median(completion_words) <= 300 and max(completion_words) <= 2500
    again = gpu_scale.write_synthetic_data(300, tmp_path / "again", vocabulary, seed=3, peer_texts=50)
    assert again.dataset.read_bytes() == data.dataset.read_bytes() and again.peer_texts == data.peer_texts


@pytest.mark.slow
def test_gpu_scale_script_runs_on_the_cpu(tmp_path, capsys):
    gpu_scale = load_script()
    out = tmp_path / "gpu_scale.json"
    argv = ["--instructions", "40", "--peer-texts", "100", "--device", "cpu"]
    returned = gpu_scale.main([*argv, "--work-dir", str(tmp_path / "work"), "--out", str(out)])

    record = json.loads(out.read_text())
    assert record["complete"] and record["rerun_scores_identical"]
    assert record["data"]["instructions"] == 40 and record["data"]["completions"] == 160
    assert record["plain_encode"]["texts"] == 100 and record["plain_encode"]["fp16"] is None
    assert record["plain_encode"]["fp32"]["texts_per_s"] > 0 and record["plain_encode"]["fp32"]["tokens_per_s"] > 0
    first, rerun = record["map"], record["map_rerun"]
    for run in (first, rerun):
        assert run["dataset"]["instructions"] == 40 and run["dataset"]["responses"] == 160
        assert run["scores"] == {**run["scores"], "scored": 160, "unscored": 0}
        assert run["proxies"] == {"file": 40}
        assert {"load", "proxy", "score", "map", "select"} <= set(run["timings_s"])
        assert run["embedding"]["texts"] == 320 and run["embedding"]["distinct_texts"] == 200
        assert run["peak_rss_bytes"] > 0 and run["cuda_peak_bytes"] is None
    assert first["embedding"]["encoded_texts"] == 200 and first["embedding"]["precision"] == "fp32"
    assert rerun["embedding"]["encoded_texts"] == 0 and rerun["embedding"]["cached_texts"] == 200
    assert first["score_texts_per_s"] > 0 and record["score_vs_plain_fp32"] > 0
    assert 0 < record["rerun_score_fraction"] < 1
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["device"] == "cpu"
    assert "--instructions 40" in record["command"] and "admap map" in first["command"]
    assert returned["map"] == first
    assert "| admap score stage / plain fp32 encode |" in capsys.readouterr().out
