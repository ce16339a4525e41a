"""The embedding cache, chunked scoring and the precision check, with a model-free engine (fast)
and with the real offline MiniLM (slow)."""

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from progress_bars import bar_states, record_bars

from admap.embed import EmbeddingOptions, longest_first, resolve_precision, text_keys
from admap.embedding_store import EmbeddingStore, open_store, store_directory, stored_embeddings
from admap.encoders import EmbeddingSpec
from admap.engines import ENGINES
from admap.score.reference import ReferenceScorer

DIMENSION = 8


def hashed_vector(text: str) -> np.ndarray:
    """A unit vector that depends on the text only: a stand-in encoder with known outputs."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class HashingEngine:
    """Records every chunk it is asked to encode, and the precision asked for each."""

    chunks: list
    precisions: list
    name: str = "hashing"
    # Where its "encoders" run, whatever the scorer's device: a test sets "cuda" on this CPU machine.
    encoding_device: ClassVar[str] = "cpu"

    @classmethod
    def from_options(cls, options, *, device):
        return cls(chunks=CALLS, precisions=PRECISIONS_ASKED)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def embed(self, texts, spec, *, chunk_size, batch_size):
        for start in range(0, len(texts), chunk_size):
            chunk = list(texts[start : start + chunk_size])
            self.chunks.append(chunk)
            self.precisions.append(spec.precision)
            yield np.arange(start, start + len(chunk)), np.stack([hashed_vector(t) for t in chunk])


CALLS: list = []
PRECISIONS_ASKED: list = []


@pytest.fixture
def hashing_engine(monkeypatch):
    CALLS.clear()
    PRECISIONS_ASKED.clear()
    monkeypatch.setitem(ENGINES._entries, "hashing", HashingEngine)
    return CALLS


def table(n_instructions: int = 30, responses: int = 4):
    instructions = pd.DataFrame(
        {
            "instruction_id": [f"q{i}" for i in range(n_instructions)],
            "proxy_response": [f"proxy answer {i} " * (1 + i % 5) for i in range(n_instructions)],
        }
    )
    rows = [
        (f"q{i}", f"q{i}-{k}", f"response {k} to {i} " * (1 + (i * k) % 7))
        for i in range(n_instructions)
        for k in range(responses)
    ]
    # A duplicate response text (two instructions share an answer): encoded once.
    rows.append(("q0", "q0-dup", rows[5][2]))
    return instructions, pd.DataFrame(rows, columns=["instruction_id", "response_id", "response"])


def expected_scores(instructions, responses):
    proxy_of = dict(zip(instructions["instruction_id"], instructions["proxy_response"]))
    return np.array(
        [
            hashed_vector(r) @ hashed_vector(proxy_of[i])
            for i, r in zip(responses["instruction_id"], responses["response"])
        ],
        dtype=np.float32,
    )


def scorer(cache_dir, **options):
    return ReferenceScorer(
        options=EmbeddingOptions(engine="hashing", embedding_cache_dir=str(cache_dir), **options), progress=False
    )


def test_store_round_trip_and_missing_keys(tmp_path):
    store = EmbeddingStore(tmp_path / "s", EmbeddingSpec("m", "fp32"))
    texts = [f"text {i}" for i in range(10)]
    vectors = np.stack([hashed_vector(t) for t in texts])
    store.add(text_keys(texts[:6]), vectors[:6])
    store.add(text_keys(texts[6:]), vectors[6:])
    positions = store.locate(text_keys([texts[7], "absent", texts[2]]))
    assert positions[1] == -1
    np.testing.assert_array_equal(store.gather(positions[[0, 2]]), vectors[[7, 2]])
    assert len(store) == 10 and store.dimension == DIMENSION


def test_store_is_shared_between_processes_views_and_oldest_copy_wins(tmp_path):
    spec = EmbeddingSpec("m", "fp32")
    writer, reader = EmbeddingStore(tmp_path, spec), EmbeddingStore(tmp_path, spec)
    assert reader.locate(text_keys(["a"]))[0] == -1
    writer.add(text_keys(["a"]), hashed_vector("a")[None])
    writer.add(text_keys(["a"]), hashed_vector("b")[None])  # a second writer's copy of the same text
    position = reader.locate(text_keys(["a"]))[0]
    np.testing.assert_array_equal(reader.gather([position])[0], hashed_vector("a"))


def test_store_ignores_unpublished_shards_and_refuses_other_specs(tmp_path):
    spec = EmbeddingSpec("m", "fp32")
    store = EmbeddingStore(tmp_path, spec)
    store.add(text_keys(["a"]), hashed_vector("a")[None])
    # A writer killed between its two files leaves vectors without keys: not a shard.
    np.save(tmp_path / "99999999999999999999-dead.vectors.npy", np.zeros((1, DIMENSION), np.float32))
    assert len(EmbeddingStore(tmp_path, spec)) == 1
    with pytest.raises(ValueError, match="holds embeddings of"):
        EmbeddingStore(tmp_path, EmbeddingSpec("m", "bf16"))
    with pytest.raises(ValueError, match="dimension"):
        store.add(text_keys(["b"]), np.zeros((1, 3), np.float32))


def test_keys_and_namespaces():
    keys = text_keys(["a", "b", "a", "\ud800 lone surrogate"])
    assert keys[0] == keys[2] and keys[0] != keys[1] and len(set(keys.tolist())) == 3
    names = {EmbeddingSpec(m, p).namespace for m in ("x", "y/x") for p in ("fp32", "bf16")}
    assert len(names) == 4
    assert longest_first(["ab", "abcd", "a", "abc"]).tolist() == [1, 3, 0, 2]


def test_scores_are_the_cosines_and_a_rerun_encodes_nothing(tmp_path, hashing_engine):
    instructions, responses = table()
    first = scorer(tmp_path)
    scores = first.score(instructions, responses)
    np.testing.assert_allclose(scores, expected_scores(instructions, responses), atol=1e-6)
    distinct = len(set(responses["response"]) | set(instructions["proxy_response"]))
    assert sum(map(len, hashing_engine)) == distinct == first.embedding_report.encoded_texts

    hashing_engine.clear()
    again = scorer(tmp_path)
    np.testing.assert_array_equal(again.score(instructions, responses), scores)
    assert hashing_engine == [] and again.embedding_report.cached_texts == distinct

    # A new scorer run on part of the data (a new region, a subset) reuses the same store.
    subset = responses[responses["instruction_id"].isin(["q1", "q2"])]
    np.testing.assert_array_equal(scorer(tmp_path).score(instructions, subset), scores[subset.index])
    assert hashing_engine == []


def test_memory_is_bounded_by_the_chunk_size(tmp_path, hashing_engine, monkeypatch):
    instructions, responses = table(50)
    gathered = []
    original = EmbeddingStore.gather
    monkeypatch.setattr(EmbeddingStore, "gather", lambda self, p: gathered.append(len(p)) or original(self, p))
    scores = scorer(tmp_path, embed_chunk_size=7).score(instructions, responses)
    assert max(map(len, hashing_engine)) <= 7 and max(gathered) <= 7
    np.testing.assert_allclose(scores, expected_scores(instructions, responses), atol=1e-6)
    # Chunks go longest first, so that each holds texts of similar length.
    lengths = [len(t) for chunk in hashing_engine for t in chunk]
    assert lengths == sorted(lengths, reverse=True)


def test_without_the_cache_nothing_is_kept(tmp_path, hashing_engine):
    instructions, responses = table(5)
    run = scorer(tmp_path, embedding_cache=False)
    run.score(instructions, responses)
    assert run.embedding_report.cache_dir is None and not any(tmp_path.iterdir())
    with open_store(EmbeddingSpec(), cache=True, cache_dir=str(tmp_path)) as store:
        assert store.directory == store_directory(EmbeddingSpec(), str(tmp_path))


def test_unscorable_responses_stay_nan(tmp_path, hashing_engine):
    instructions, responses = table(4)
    instructions.loc[1, "proxy_response"] = None
    scores = scorer(tmp_path).score(instructions, responses)
    assert np.isnan(scores[responses["instruction_id"] == "q1"]).all()
    assert np.isfinite(scores[responses["instruction_id"] != "q1"]).all()


def test_option_errors():
    with pytest.raises(KeyError, match="did you mean 'ray'"):
        EmbeddingOptions(engine="rya")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="embed_chunk_size"):
        EmbeddingOptions(embed_chunk_size=0)


@pytest.mark.slow
def test_bf16_is_checked_against_fp32_and_falls_back(tmp_path):
    from admap.inputs import InputOptions
    from admap.timing.embedding import with_stand_in_proxies

    demo = InputOptions().read(progress=False)
    # The demo set carries no proxies: its instructions stand in for them (the check compares precisions).
    instructions, responses = with_stand_in_proxies(demo.instructions), demo.responses
    fp32 = ReferenceScorer(
        options=EmbeddingOptions(embedding_cache_dir=str(tmp_path / "a")), device="cpu", progress=False
    )
    reference = fp32.score(instructions, responses)

    bf16 = ReferenceScorer(
        options=EmbeddingOptions(embed_precision="bf16", embedding_cache_dir=str(tmp_path / "b")),
        device="cpu",
        progress=False,
    )
    fast = bf16.score(instructions, responses)
    check = bf16.embedding_report.precision_check
    assert bf16.embedding_report.precision == "bf16" and check["spearman"] >= 0.999
    # The check says what it cost: the distinct texts of its pairs, encoded once in each precision.
    assert check["pairs"] < check["texts"] <= 2 * check["pairs"]
    assert check["fp32_seconds"] > 0 and check["requested_seconds"] > 0
    assert 0 < np.max(np.abs(fast - reference)) < 0.02  # bf16 really ran, and stayed close
    assert pd.Series(fast).corr(pd.Series(reference), method="spearman") >= 0.999

    strict = ReferenceScorer(
        options=EmbeddingOptions(
            embed_precision="bf16", min_precision_agreement=1.0, embedding_cache_dir=str(tmp_path / "c")
        ),
        device="cpu",
        progress=False,
    )
    fallback = strict.score(instructions, responses)
    assert strict.embedding_report.precision == "fp32"
    assert strict.embedding_report.precision_check["used"] == "fp32"
    np.testing.assert_allclose(fallback, reference, atol=1e-6)
    assert not list((tmp_path / "c").glob("*-bf16-*/*.npy"))


def test_the_learned_scorer_reads_what_the_reference_scorer_embedded(tmp_path, hashing_engine):
    from admap.score.learned import LearnedScorer

    instructions, responses = table(10)
    scorer(tmp_path).score(instructions, responses)
    hashing_engine.clear()
    learned = LearnedScorer(
        options=EmbeddingOptions(engine="hashing", embedding_cache_dir=str(tmp_path)), progress=False
    )
    features = learned.featurize(instructions, responses)
    assert hashing_engine == []
    np.testing.assert_array_equal(features, np.stack([hashed_vector(t) for t in responses["response"]]))


def test_precision_follows_the_device_the_engine_encodes_on(tmp_path, hashing_engine, monkeypatch):
    """A CPU process whose engine encodes on CUDA (a CPU head node driving GPU actors): ``auto`` is fp16,
    and the check encodes its sample on the engine, in fp32 then fp16, before the run's fp16 chunks."""
    monkeypatch.setattr(HashingEngine, "encoding_device", "cuda")
    instructions, responses = table()
    run = ReferenceScorer(
        options=EmbeddingOptions(engine="hashing", embedding_cache_dir=str(tmp_path), embed_chunk_size=64),
        device="cpu",
        progress=False,
    )
    scores = run.score(instructions, responses)
    np.testing.assert_allclose(scores, expected_scores(instructions, responses), atol=1e-6)
    report, check = run.embedding_report, run.embedding_report.precision_check
    assert report.precision == "fp16" and (check["requested"], check["used"]) == ("fp16", "fp16")
    assert check["pairs"] == EmbeddingOptions().agreement_sample_size(len(responses)) == 100
    sample_chunks = PRECISIONS_ASKED.index("fp16")
    assert sample_chunks > 0 and set(PRECISIONS_ASKED[:sample_chunks]) == {"fp32"}
    assert set(PRECISIONS_ASKED[sample_chunks:]) == {"fp16"}
    # The sample is encoded once per precision, the rest once: the check costs one fp32 pass over the sample.
    sample_texts = sum(map(len, hashing_engine[:sample_chunks]))
    assert sum(map(len, hashing_engine)) == report.distinct_texts + sample_texts
    assert report.encoded_texts == report.distinct_texts

    monkeypatch.setattr(HashingEngine, "encoding_device", "cpu")
    with pytest.raises(ValueError, match="fp16 embeddings need a CUDA device, and the texts are encoded on 'cpu'"):
        scorer(tmp_path, embed_precision="fp16").score(instructions, responses)


def test_the_learned_scorer_checks_a_lower_precision_like_the_reference_scorer(tmp_path, hashing_engine):
    from admap.score.learned import LearnedScorer, same_instruction_pairs

    instructions, responses = table(40)
    learned = LearnedScorer(
        options=EmbeddingOptions(engine="hashing", embed_precision="bf16", embedding_cache_dir=str(tmp_path)),
        progress=False,
    )
    features = learned.featurize(instructions, responses)
    np.testing.assert_array_equal(features, np.stack([hashed_vector(t) for t in responses["response"]]))
    report, check = learned.embedding_report, learned.embedding_report.precision_check
    # Each response paired with the next of its instruction: 161 responses to 40 instructions, 121 pairs.
    instruction_ids = responses["instruction_id"].to_numpy()
    pairs = same_instruction_pairs(instruction_ids)
    assert len(pairs) == len(responses) - 40 == 121
    assert (instruction_ids[pairs[:, 0]] == instruction_ids[pairs[:, 1]]).all()
    assert check["pairs"] == 100 and (check["requested"], check["used"]) == ("bf16", "bf16")
    assert report.precision == "bf16" and PRECISIONS_ASKED[0] == "fp32"
    assert list(tmp_path.glob("*-fp32-*/*.keys.npy")) and list(tmp_path.glob("*-bf16-*/*.keys.npy"))

    # Once the store holds every text, nothing is encoded and nothing checked.
    hashing_engine.clear()
    again = LearnedScorer(
        options=EmbeddingOptions(engine="hashing", embed_precision="bf16", embedding_cache_dir=str(tmp_path)),
        progress=False,
    )
    np.testing.assert_array_equal(again.featurize(instructions, responses), features)
    assert hashing_engine == [] and again.embedding_report.precision_check is None


def embed_with_bar(texts, cache_dir, *, engine="hashing", chunk_size=4, progress=True):
    """The embedding stage over ``texts`` in fp32 (no precision check), ``chunk_size`` texts a chunk."""
    options = EmbeddingOptions(
        engine=engine, embed_precision="fp32", embed_chunk_size=chunk_size, embedding_cache_dir=str(cache_dir)
    )
    pairs = np.column_stack([np.arange(len(texts) - 1), np.arange(1, len(texts))])
    with stored_embeddings(
        texts, pairs, model="all-MiniLM-L6-v2", options=options, device="cpu", batch_size=4, seed=0, progress=progress
    ) as stored:
        return stored.report


def test_the_embedding_stage_draws_one_bar_over_every_chunk(tmp_path, hashing_engine, monkeypatch, capsys):
    bars = record_bars(monkeypatch)
    texts = [f"text number {i} " * (1 + i % 3) for i in range(12)]
    embed_with_bar(texts + texts[:2], tmp_path)  # repeats are embedded once: 12 distinct texts
    assert [len(chunk) for chunk in hashing_engine] == [4, 4, 4]
    (bar,) = bars
    assert (bar.total, bar.n, bar.updates) == (12, 12, [4, 4, 4])
    states = bar_states(capsys.readouterr().err, "embedding (")
    # Drawn from 0 once (a bar per chunk would start from 0 three times), closed at 12 of 12.
    assert sum("| 0/12 [" in state for state in states) == 1
    assert "| 12/12 [" in states[-1] and not any("cached" in state for state in states)

    # Resumed: the 12 are cached, 5 are new. The bar starts at the cached ones, shows them, and counts on.
    bars.clear()
    report = embed_with_bar(texts + [f"new text {i}" for i in range(5)], tmp_path)
    (bar,) = bars
    assert (bar.total, bar.initial, bar.updates, bar.n) == (17, 12, [4, 1], 17)
    assert report.cached_texts == 12 and report.encoded_texts == 5
    states = bar_states(capsys.readouterr().err, "embedding (")
    assert "| 12/17 [" in states[0] and "| 17/17 [" in states[-1]
    assert all("cached=12" in state for state in states)

    # Wholly cached: the stage still shows its one bar, full from the start.
    bars.clear()
    embed_with_bar(texts, tmp_path)
    assert [(bar.total, bar.initial, bar.updates) for bar in bars] == [(12, 12, [])]
    states = bar_states(capsys.readouterr().err, "embedding (")
    assert "| 12/12 [" in states[0] and "| 12/12 [" in states[-1] and "cached=12" in states[-1]


def test_the_quiet_embedding_stage_draws_nothing(tmp_path, hashing_engine, capsys):
    embed_with_bar([f"text {i}" for i in range(9)], tmp_path, progress=False)
    assert len(hashing_engine) == 3 and capsys.readouterr().err == ""


@pytest.mark.slow
def test_minilm_embedding_draws_one_bar_and_no_bar_per_encode_call(tmp_path, monkeypatch, capsys):
    """The real offline encoder, 3 chunks: one bar over the 10 texts, and none of sentence-transformers' own
    ("Batches") under it."""
    bars = record_bars(monkeypatch)
    texts = [f"A sentence about topic {i}." for i in range(10)]
    report = embed_with_bar(texts, tmp_path, engine="local")
    assert report.encoded_texts == 10
    (bar,) = bars
    assert (bar.total, bar.n, bar.updates) == (10, 10, [4, 4, 2])
    err = capsys.readouterr().err
    states = bar_states(err, "embedding (all-MiniLM-L6-v2, fp32)")
    assert sum("| 0/10 [" in state for state in states) == 1 and "| 10/10 [" in states[-1]
    assert "Batches" not in err
