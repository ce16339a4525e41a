"""Damaged caches: every kind of broken embedding shard and reply-cache entry is reported with its file,
set aside, and its contents computed again, so that a rerun writes what a run with a fresh cache writes."""

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from admap.cli import main
from admap.embed import EmbeddingOptions, text_keys
from admap.embedding_store import (
    DIGEST_SUFFIX,
    KEYS_SUFFIX,
    QUARANTINE_FOLDER,
    SHARD_SUFFIXES,
    VECTORS_SUFFIX,
    EmbeddingStore,
    store_directory,
)
from admap.encoders import EmbeddingSpec
from admap.engines import ENGINES
from admap.generate import Completion
from admap.generate.cache import ResponseCache, request_key
from admap.generate.runner import generate_cached
from admap.score.reference import ReferenceScorer
from tests.test_embedding_store import (
    CALLS,
    DIMENSION,
    PRECISIONS_ASKED,
    HashingEngine,
    expected_scores,
    hashed_vector,
    scorer,
    table,
)
from tests.test_generation_cache import EchoGenerator, _conversations
from tests.test_openai_client import FAKE_KEY, proxy_args, write_alpaca

CHUNK = 16  # texts per shard, so that the table's texts fill several


@pytest.fixture
def hashing_engine(monkeypatch):
    """test_embedding_store's model-free engine; the chunks it is asked to encode."""
    CALLS.clear()
    PRECISIONS_ASKED.clear()
    monkeypatch.setitem(ENGINES._entries, "hashing", HashingEngine)
    return CALLS


def random_bytes(size: int) -> bytes:
    return np.random.default_rng(0).bytes(size)


def overwrite_second_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + random_bytes(len(data) - len(data) // 2))


def overwrite_all(path: Path) -> None:
    path.write_bytes(random_bytes(path.stat().st_size))


def truncate_to_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def empty(path: Path) -> None:
    os.truncate(path, 0)


def append_bytes(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(random_bytes(DIMENSION * 4))


def remove(path: Path) -> None:
    path.unlink()


def digest_of_other_bytes(path: Path) -> None:
    digests = json.loads(path.read_text())
    digests["vectors"] = "0" * len(digests["vectors"])
    path.write_text(json.dumps(digests))


def fewer_keys_with_their_digest(path: Path) -> None:
    """A writer's slip rather than damage: one key short of the vectors, under a digest that matches."""
    keys = np.load(path)
    np.save(path, keys[:-1])
    digest_path = path.with_name(path.name.replace(KEYS_SUFFIX, DIGEST_SUFFIX))
    digests = json.loads(digest_path.read_text())
    digests["keys"] = hashlib.sha256(path.read_bytes()).hexdigest()
    digest_path.write_text(json.dumps(digests))


# (the file damaged, how, the file the warning names)
DAMAGE = {
    "vectors half overwritten": (VECTORS_SUFFIX, overwrite_second_half, VECTORS_SUFFIX),
    "vectors all random bytes": (VECTORS_SUFFIX, overwrite_all, VECTORS_SUFFIX),
    "vectors truncated": (VECTORS_SUFFIX, truncate_to_half, VECTORS_SUFFIX),
    "vectors zero-length": (VECTORS_SUFFIX, empty, VECTORS_SUFFIX),
    "vectors with bytes appended": (VECTORS_SUFFIX, append_bytes, VECTORS_SUFFIX),
    "vectors missing": (VECTORS_SUFFIX, remove, VECTORS_SUFFIX),
    "keys all random bytes": (KEYS_SUFFIX, overwrite_all, KEYS_SUFFIX),
    "keys truncated": (KEYS_SUFFIX, truncate_to_half, KEYS_SUFFIX),
    "keys fewer than vectors": (KEYS_SUFFIX, fewer_keys_with_their_digest, VECTORS_SUFFIX),
    "digest missing": (DIGEST_SUFFIX, remove, DIGEST_SUFFIX),
    "digest random bytes": (DIGEST_SUFFIX, overwrite_all, DIGEST_SUFFIX),
    "digest truncated": (DIGEST_SUFFIX, truncate_to_half, DIGEST_SUFFIX),
    "digest of other bytes": (DIGEST_SUFFIX, digest_of_other_bytes, VECTORS_SUFFIX),
}


def shard_names(directory: Path) -> list[str]:
    return sorted(p.name[: -len(KEYS_SUFFIX)] for p in directory.glob(f"*{KEYS_SUFFIX}"))


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_shard_is_quarantined_and_its_texts_encoded_again(tmp_path, hashing_engine, caplog, damage):
    damaged_suffix, damage_file, named_suffix = DAMAGE[damage]
    instructions, responses = table(12)
    fresh = scorer(tmp_path / "fresh", embed_chunk_size=CHUNK).score(instructions, responses)
    np.testing.assert_allclose(fresh, expected_scores(instructions, responses), atol=1e-6)

    cache = tmp_path / "cache"
    scorer(cache, embed_chunk_size=CHUNK).score(instructions, responses)
    (directory,) = cache.iterdir()
    names = shard_names(directory)
    assert len(names) >= 3
    damaged = names[1]
    rows = len(np.load(directory / f"{damaged}{KEYS_SUFFIX}"))
    damage_file(directory / f"{damaged}{damaged_suffix}")

    with caplog.at_level(logging.WARNING, logger="admap.embedding_store"):
        rerun = scorer(cache, embed_chunk_size=CHUNK)
        np.testing.assert_array_equal(rerun.score(instructions, responses), fresh)
    assert rerun.embedding_report.encoded_texts == rows  # that shard's texts, and no other
    (reported,) = rerun.embedding_report.quarantined_shards  # what summary.json's embedding block lists
    assert reported["shard"] == damaged and reported["file"] == str(directory / f"{damaged}{named_suffix}")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(directory / f"{damaged}{named_suffix}") in warning and QUARANTINE_FOLDER in warning
    quarantined = sorted(p.name for p in (directory / QUARANTINE_FOLDER).iterdir())
    kept = [s for s in SHARD_SUFFIXES if not (s == damaged_suffix and damage_file is remove)]
    assert quarantined == sorted(f"{damaged}{s}" for s in kept)
    assert damaged not in shard_names(directory)

    # The texts now come from the shard written in its place: nothing is encoded or reported again.
    caplog.clear()
    hashing_engine.clear()
    with caplog.at_level(logging.WARNING, logger="admap.embedding_store"):
        again = scorer(cache, embed_chunk_size=CHUNK)
        np.testing.assert_array_equal(again.score(instructions, responses), fresh)
    assert hashing_engine == [] and not caplog.records and again.embedding_report.quarantined_shards == []


def test_a_shard_of_another_model_is_found_by_re_encoding_a_sample(tmp_path, hashing_engine, caplog):
    """Its digest holds, so only re-encoding finds it: done when a run encodes anything, at two texts a shard."""
    instructions, responses = table(12)
    fresh = scorer(tmp_path / "fresh").score(instructions, responses)
    cache = tmp_path / "cache"
    spec = EmbeddingSpec(ReferenceScorer(options=EmbeddingOptions(engine="hashing")).embedding_model, "fp32")
    planted = EmbeddingStore(store_directory(spec, str(cache)), spec)
    proxies = instructions["proxy_response"].tolist()
    planted.add(text_keys(proxies), np.stack([hashed_vector(f"another model's view of {t}") for t in proxies]))
    (name,) = shard_names(planted.directory)

    hashing_engine.clear()
    with caplog.at_level(logging.WARNING, logger="admap.embedding_store"):
        run = scorer(cache)
        np.testing.assert_array_equal(run.score(instructions, responses), fresh)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(planted.directory / f"{name}{VECTORS_SUFFIX}") in warning and "re-encode" in warning
    assert (planted.directory / QUARANTINE_FOLDER / f"{name}{VECTORS_SUFFIX}").is_file()
    assert run.embedding_report.encoded_texts == run.embedding_report.distinct_texts
    assert len(hashing_engine[0]) == 2  # the sample: two texts of the one shard, before the run's chunks


def test_a_shard_is_on_disk_before_its_keys_publish_it(tmp_path, monkeypatch):
    """Each file is flushed under its temporary name before its rename, and the folder after the renames,
    the vectors' and digest's before the keys' rename that publishes the shard."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recording_replace(source, target):
        events.append(("replace", str(source), str(target)))
        replace(source, target)

    store = EmbeddingStore(tmp_path, EmbeddingSpec("m", "fp32"))
    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    store.add(text_keys(["a", "b"]), np.stack([hashed_vector("a"), hashed_vector("b")]))
    monkeypatch.undo()

    renames = [e for e in events if e[0] == "replace"]
    assert [Path(target).name.split(".", 1)[1] for _, _, target in renames] == [
        "vectors.npy",
        "digest.json",
        "keys.npy",
    ]
    for rename in renames:
        assert ("fsync", rename[1]) in events[: events.index(rename)]  # the temporary file, before its rename
    folder_syncs = [i for i, e in enumerate(events) if e == ("fsync", str(tmp_path))]
    keys_rename = events.index(renames[-1])
    assert len(folder_syncs) == 2 and events.index(renames[1]) < folder_syncs[0] < keys_rename < folder_syncs[1]


@pytest.mark.slow
def test_admap_map_with_a_damaged_embedding_cache_maps_as_with_a_fresh_one(tmp_path, caplog):
    """The real model through the command: half of the one shard overwritten, scores and regions unchanged."""
    import pandas as pd

    rows = [
        {
            "instruction": f"Explain topic {i} in one sentence.",
            "chosen": f"Topic {i} is explained here in one clear sentence, number {i}.",
            "rejected": "No. " + "I will not talk about it. " * (i % 3 + 1),
            "proxy": f"Topic {i}, explained in one clear sentence.",
        }
        for i in range(12)
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def map_with_cache(cache: str, out: str) -> pd.DataFrame:
        argv = ["map", str(data), "--scorer", "reference", "--proxy-column", "proxy", "--generator", "none"]
        argv += ["--embedding-cache-dir", str(tmp_path / cache), "--device", "cpu", "--out", str(tmp_path / out)]
        assert main([*argv, "--quiet", "--no-plot"]) == 0
        return pd.read_parquet(tmp_path / out / "scores.parquet")

    fresh = map_with_cache("fresh-cache", "fresh")
    map_with_cache("cache", "first")
    (vectors,) = (tmp_path / "cache").glob(f"*/*{VECTORS_SUFFIX}")
    overwrite_second_half(vectors)
    with caplog.at_level(logging.WARNING, logger="admap.embedding_store"):
        rerun = map_with_cache("cache", "rerun")
    assert str(vectors) in caplog.text
    pd.testing.assert_frame_equal(rerun, fresh, check_exact=True)
    summary = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    (reported,) = summary["scorer"]["embedding"]["quarantined_shards"]
    assert reported["file"] == str(vectors)


# -- the reply cache ------------------------------------------------------------------------------------

POISON = {
    "empty object": b"{}",
    "array": b"[]",
    "null text": b'{"text": null}',
    "number text": b'{"text": 5, "tokens_in": 1, "tokens_out": 1}',
    "negative count": b'{"text": "re: q1", "tokens_in": -1, "tokens_out": 1}',
    "truncated JSON": b'{"text": "re: q',
    "a number": b"3",
    "empty file": b"",
    "not UTF-8": b'{"text": "\xff\xfe"}',
}


@pytest.mark.parametrize("poison", POISON)
def test_a_poisoned_reply_is_asked_again_with_a_warning(tmp_path, caplog, poison):
    cache = ResponseCache(tmp_path)
    first, _ = generate_cached(EchoGenerator(), _conversations(3), cache=cache)
    entry = cache._path(request_key(EchoGenerator().identity(), _conversations(3)[1]))
    entry.write_bytes(POISON[poison])

    rerun = EchoGenerator()
    with caplog.at_level(logging.WARNING, logger="admap.generate.cache"):
        replies, stats = generate_cached(rerun, _conversations(3), cache=cache)
    assert rerun.asked == ["q1"] and [r.text for r in replies] == [r.text for r in first]
    assert (stats.cache_hits, stats.succeeded, stats.failed) == (2, 3, 0)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert str(entry) in warning

    # The entry was written again: the next run asks nothing.
    caplog.clear()
    third = EchoGenerator()
    generate_cached(third, _conversations(3), cache=cache)
    assert third.asked == [] and not caplog.records


def test_an_empty_reply_is_a_reply(tmp_path):
    """A model may answer with nothing: the cache keeps that answer, as it keeps any string."""
    cache = ResponseCache(tmp_path)
    key = request_key({"model": "m"}, [{"role": "user", "content": "Say nothing."}])
    cache.put(key, Completion(text="", tokens_in=3))
    assert cache.get(key) == Completion(text="", tokens_in=3, cached=True)


def test_admap_proxy_asks_again_for_the_poisoned_replies_only(tmp_path, chat_server, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    data = write_alpaca(tmp_path / "data.jsonl", [f"Write line {i}." for i in range(6)])
    out = tmp_path / "out" / "proxies.jsonl"
    args = proxy_args(data, chat_server, tmp_path / "cache", out, "--quiet")
    assert main(args) == 0
    first = out.read_bytes()
    entries = sorted((tmp_path / "cache").glob("*/*.json"))
    assert chat_server.count() == len(entries) == 6
    entries[0].write_bytes(POISON["null text"])
    entries[3].write_bytes(POISON["empty object"])

    with caplog.at_level(logging.WARNING, logger="admap.generate.cache"):
        assert main(args) == 0
    assert chat_server.count() == 8  # the two poisoned entries, asked again
    assert out.read_bytes() == first
    assert str(entries[0]) in caplog.text and str(entries[3]) in caplog.text
    summary = json.loads((tmp_path / "out" / "proxies.summary.json").read_text())
    assert summary["generation"]["cache_hits"] == 4 and summary["generation"]["failed"] == 0
