"""The ``ray`` engine (Ray Data): the same embeddings, scores, regions and pairs as the local engine."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from admap.commands.map import MapConfig, run_map
from admap.embed import EmbeddingOptions, longest_first
from admap.encoders import EmbeddingSpec, encode_texts
from admap.engines import ENGINES
from admap.engines.ray_data import PASSED_ENV, RayEngine, plan_actors
from admap.generate.options import GeneratorOptions
from admap.inputs import InputOptions, demo_dataset_path

# Ray Data's own DataContext copies touch its deprecated fields; nothing admap can change.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


def demo_texts(n: int = 100, *, chars: int = 400) -> list[str]:
    """``n`` distinct real texts of the demo set (instructions and responses, cut short), longest first."""
    rows = [json.loads(line) for line in open(demo_dataset_path(), encoding="utf-8")]
    texts = [row["instruction"] for row in rows] + [c["response"] for row in rows for c in row["completions"]]
    texts = list(dict.fromkeys(text[:chars] for text in texts))[:n]
    return [texts[i] for i in longest_first(texts)]


def gather(chunks) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(chunks)
    positions = np.concatenate([p for p, _ in chunks])
    vectors = np.concatenate([v for _, v in chunks])
    return positions, vectors


def test_actor_plan():
    one_node = {"CPU": 16.0}
    assert plan_actors("auto", None, one_node, [one_node]) == plan_actors("cpu", None, one_node, [one_node])
    cpu = plan_actors("auto", None, one_node, [one_node])
    assert (cpu.actors, cpu.device, cpu.num_cpus, cpu.num_gpus) == (8, "cpu", 2, 0)
    assert plan_actors("cpu", 4, one_node, [one_node]).num_cpus == 4
    # Actors fit the nodes: three 3-CPU nodes hold one 2-CPU actor each.
    assert plan_actors("auto", None, {"CPU": 9.0}, [{"CPU": 3.0}] * 3).actors == 3
    assert plan_actors("auto", None, {"CPU": 1.0}, [{"CPU": 1.0}]).num_cpus == 1
    gpu_node = {"CPU": 32.0, "GPU": 8.0}
    cluster = {"CPU": 64.0, "GPU": 16.0}
    gpu = plan_actors("auto", None, cluster, [gpu_node, gpu_node])
    assert (gpu.actors, gpu.device, gpu.num_cpus, gpu.num_gpus) == (16, "cuda", 4, 1)
    assert plan_actors("cuda:1", 2, cluster, [gpu_node, gpu_node]).device == "cuda"
    assert plan_actors("cpu", None, cluster, [gpu_node, gpu_node]).num_gpus == 0
    with pytest.raises(RuntimeError, match="no GPUs"):
        plan_actors("cuda", None, one_node, [one_node])


def test_unknown_engine_suggests_a_name():
    with pytest.raises(KeyError, match="did you mean 'ray'"):
        EmbeddingOptions(engine="rya")
    with pytest.raises(KeyError, match="known: local, ray"):
        ENGINES.get("spark")


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    message = r"engine ray needs Ray Data: pip install 'admap\[dist\]'"
    with pytest.raises(ImportError, match=message):
        ENGINES.get("ray").from_options(EmbeddingOptions(engine="ray"), device="cpu")
    with pytest.raises(ImportError, match=message), RayEngine():
        pass


def test_only_named_variables_travel(monkeypatch):
    from admap.engines.ray_data import passed_env

    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    monkeypatch.setenv("HF_TOKEN", "secret")
    monkeypatch.setenv("ADMAP_CACHE", "/cache")
    monkeypatch.delenv("HF_HOME", raising=False)
    env = passed_env()
    assert env["ADMAP_CACHE"] == "/cache" and "HF_HOME" not in env
    assert set(env) <= set(PASSED_ENV)


@pytest.mark.slow
def test_engine_starts_its_own_cluster_once_and_stops_it_at_exit():
    """Runs before the shared cluster starts: with Ray uninitialised, entering the engine starts a local
    cluster, which every ``embed`` of the block uses (one abandoned after its first chunk too), and the
    exit shuts it down."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    texts = [f"text number {i}" for i in range(12)]
    with RayEngine(address="local", device="cpu") as engine:
        assert ray.is_initialized() and engine.encoding_device == "cpu"
        chunks = engine.embed(texts, EmbeddingSpec(), chunk_size=4, batch_size=4)
        positions, vectors = next(chunks)
        assert len(positions) == 4 and vectors.shape == (4, 384) and vectors.dtype == np.float32
        chunks.close()
        positions, _ = gather(engine.embed(texts, EmbeddingSpec(), chunk_size=4, batch_size=4))
        assert sorted(positions.tolist()) == list(range(len(texts)))
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 2-CPU cluster for the module's tests (startup takes seconds); the engine uses it and
    leaves it running, since it did not start it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_every_position_once_and_the_local_vectors(ray_cluster, minilm):
    texts = demo_texts(100)
    with RayEngine(actors=2, device="cpu") as engine:
        positions, vectors = gather(engine.embed(texts, EmbeddingSpec(), chunk_size=16, batch_size=16))
    assert sorted(positions.tolist()) == list(range(len(texts)))
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    expected = encode_texts(minilm, texts, batch_size=16, progress=False)
    np.testing.assert_allclose(vectors, expected[positions], atol=1e-5)
    assert ray_cluster.is_initialized()  # the engine leaves a cluster it did not start


def _map(tmp_path, name: str, engine: str, proxy_file) -> tuple:
    config = MapConfig(
        input=InputOptions(limit=16),
        out=str(tmp_path / name),
        proxy_file=str(proxy_file),
        generation=GeneratorOptions(generator="none"),
        embedding=EmbeddingOptions(
            engine=engine, embed_chunk_size=32, embedding_cache_dir=str(tmp_path / f"cache-{name}")
        ),
        device="cpu",
        plot=False,
        view=False,
    )
    run_dir = run_map(config, progress=False, command=f"test {engine}")
    return run_dir, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_map_on_ray_equals_the_local_map(ray_cluster, tmp_path):
    # Proxies from a file (no generator): each instruction's first response, reworded a little.
    rows = [json.loads(line) for line in open(demo_dataset_path(), encoding="utf-8")][:16]
    proxy_file = tmp_path / "proxies.jsonl"
    with proxy_file.open("w", encoding="utf-8") as out:
        for row in rows:
            proxy = "In short: " + row["completions"][0]["response"][:600]
            out.write(json.dumps({"instruction": row["instruction"], "proxy_response": proxy}) + "\n")

    local_dir, local_summary = _map(tmp_path, "local", "local", proxy_file)
    ray_dir, ray_summary = _map(tmp_path, "ray", "ray", proxy_file)
    assert (
        local_summary["scorer"]["embedding"]["engine"] == "local"
        and ray_summary["scorer"]["embedding"]["engine"] == "ray"
    )
    assert (
        ray_summary["scorer"]["embedding"]["encoded_texts"] == local_summary["scorer"]["embedding"]["encoded_texts"] > 0
    )

    local_scores = pd.read_parquet(local_dir / "scores.parquet")
    ray_scores = pd.read_parquet(ray_dir / "scores.parquet")
    assert local_scores["alignment_score"].notna().all()
    assert (ray_scores["response_id"] == local_scores["response_id"]).all()
    np.testing.assert_allclose(ray_scores["alignment_score"], local_scores["alignment_score"], atol=1e-5)
    local_map = pd.read_parquet(local_dir / "map.parquet")
    ray_map = pd.read_parquet(ray_dir / "map.parquet")
    assert (ray_map["instruction_id"] == local_map["instruction_id"]).all()
    assert (ray_map["region"] == local_map["region"]).all()
    assert set(local_map["region"]) >= {"high_mean", "low_mean", "high_variance"}
    for subset in sorted(p.name for p in (local_dir / "pairs").iterdir()):
        assert (ray_dir / "pairs" / subset).read_bytes() == (local_dir / "pairs" / subset).read_bytes(), subset


@pytest.mark.slow
def test_the_precision_check_encodes_on_the_actors(ray_cluster, tmp_path):
    """bf16 under the ray engine: the check's sample is encoded by the actors in fp32 and in bf16, and the
    scores and the check match the local engine's (both on this machine's CPU)."""
    from admap.score.reference import ReferenceScorer
    from admap.timing.embedding import with_stand_in_proxies

    demo = InputOptions(limit=30).read(progress=False)
    instructions, responses = with_stand_in_proxies(demo.instructions), demo.responses
    runs = {}
    for engine in ("local", "ray"):
        options = EmbeddingOptions(
            engine=engine, embed_precision="bf16", embed_chunk_size=64, embedding_cache_dir=str(tmp_path / engine)
        )
        scorer = ReferenceScorer(options=options, device="cpu", progress=False)
        runs[engine] = scorer.score(instructions, responses), scorer.embedding_report
    (local_scores, local_report), (ray_scores, ray_report) = runs["local"], runs["ray"]
    assert ray_report.engine == "ray" and ray_report.precision == "bf16"
    check, local_check = ray_report.precision_check, local_report.precision_check
    assert check["requested"] == check["used"] == "bf16" and check["pairs"] == local_check["pairs"]
    assert abs(check["spearman"] - local_check["spearman"]) < 1e-3
    assert list((tmp_path / "ray").glob("*-fp32-*/*.keys.npy"))  # the sample's fp32 vectors, kept
    np.testing.assert_allclose(ray_scores, local_scores, atol=2e-3)
