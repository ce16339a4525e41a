"""The OpenAI Batch API path, against a fake batch server on 127.0.0.1 (tests/batch_server.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from admap.generate.cache import ResponseCache  # noqa: E402
from admap.generate.openai_batch import OpenAIBatchGenerator  # noqa: E402
from admap.generate.options import GeneratorOptions  # noqa: E402
from admap.generate.runner import generate_cached  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from batch_server import BatchServer, reply_for, usage_for  # noqa: E402

FAKE_KEY = "sk-admap-FAKE-batch-0123456789"
POLL = 0.02


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ADMAP_CACHE", str(tmp_path / "admap-cache"))
    monkeypatch.setenv("ADMAP_BATCH_POLL_SECONDS", str(POLL))


@pytest.fixture
def server():
    with BatchServer(polls_to_complete=2) as running:
        yield running


def make(server: BatchServer, tmp_path: Path, **settings) -> OpenAIBatchGenerator:
    settings = {"poll_interval": POLL, "state_dir": str(tmp_path / "batches"), **settings}
    return OpenAIBatchGenerator(model="m", base_url=server.url, **settings)


def conversations(*texts: str) -> list[list[dict]]:
    return [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}] for text in texts]


QUESTIONS = conversations(*(f"question number {i}" for i in range(6)))


def state_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "batches").glob("*.json"))


def assert_replies(results, convs) -> None:
    for completion, messages in zip(results, convs, strict=True):
        assert completion.ok, completion.error
        assert completion.text == reply_for(messages)
        usage = usage_for(messages, completion.text)
        assert (completion.tokens_in, completion.tokens_out) == (usage["prompt_tokens"], usage["completion_tokens"])


def test_batch_run_returns_replies_caches_them_and_a_rerun_sends_nothing(server, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)

    assert_replies(results, QUESTIONS)
    assert (stats.succeeded, stats.failed, stats.cache_hits) == (6, 0, 0)
    assert stats.tokens_in == sum(r.tokens_in for r in results) > 0
    assert (server.uploads, server.created) == (1, 1)
    (batch_id,) = server.batches
    lines = server.input_lines(batch_id)
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    assert len({line["custom_id"] for line in lines}) == 6
    assert lines[0]["body"] == {"model": "m", "messages": QUESTIONS[0], "temperature": 0.0, "max_tokens": 256}
    assert state_files(tmp_path) == []  # forgotten once the results are in

    requests_so_far = len(server.log)
    again, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert len(server.log) == requests_so_far
    assert stats.cache_hits == 6 and [r.text for r in again] == [r.text for r in results]


def test_identical_requests_are_sent_once_and_reported_everywhere(server, tmp_path):
    convs = conversations("same", "other", "same")
    reported = {}
    results = make(server, tmp_path).generate(convs, on_result=lambda position, c: reported.setdefault(position, c))
    assert sorted(reported) == [0, 1, 2]
    assert_replies(results, convs)
    assert len(server.input_lines(next(iter(server.batches)))) == 2


def test_custom_ids_are_stable_and_change_with_the_settings(server, tmp_path):
    generator = make(server, tmp_path)
    body = generator.request_body(QUESTIONS[0])
    assert generator.custom_id(body) == make(server, tmp_path).custom_id(generator.request_body(QUESTIONS[0]))
    seeded = make(server, tmp_path, seed=3)
    assert seeded.custom_id(seeded.request_body(QUESTIONS[0])) != generator.custom_id(body)


def test_an_interrupted_run_resumes_its_batch_instead_of_submitting_again(server, tmp_path, monkeypatch):
    server.polls_to_complete = 4
    cache = ResponseCache(tmp_path / "cache")

    def interrupt(seconds):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("admap.generate.openai_batch._wait_between_polls", interrupt)
        generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    (state,) = [json.loads(p.read_text()) for p in state_files(tmp_path)]
    assert state["batch_id"] in server.batches and state["input_file_id"] in server.files

    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert_replies(results, QUESTIONS)
    assert (server.uploads, server.created, stats.succeeded) == (1, 1, 6)
    assert state_files(tmp_path) == []


def test_kill_9_while_polling_then_rerun_finishes_without_a_second_batch(server, tmp_path):
    server.polls_to_complete = 10**9  # the first run never sees the batch end
    script = tmp_path / "run_batch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            from admap.generate.cache import ResponseCache
            from admap.generate.openai_batch import OpenAIBatchGenerator
            from admap.generate.runner import generate_cached

            generator = OpenAIBatchGenerator(model="m", base_url={server.url!r}, poll_interval={POLL},
                                             state_dir={str(tmp_path / "batches")!r})
            generate_cached(generator, json.loads(sys.argv[1]), cache=ResponseCache({str(tmp_path / "cache")!r}))
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(script), json.dumps(QUESTIONS)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while not any(path.startswith("/v1/batches/") for _, path in server.log):
            assert process.poll() is None and time.monotonic() < deadline, "the first run did not start polling"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert len(state_files(tmp_path)) == 1

    server.polls_to_complete = 0
    results, _ = generate_cached(make(server, tmp_path), QUESTIONS, cache=ResponseCache(tmp_path / "cache"))
    assert_replies(results, QUESTIONS)
    assert (server.uploads, server.created) == (1, 1)
    assert state_files(tmp_path) == []


def test_killed_between_upload_and_batch_reuses_the_upload(server, tmp_path, monkeypatch):
    original = OpenAIBatchGenerator._create_batch

    def killed(self, client, input_file_id, openai, *, look_first):
        raise KeyboardInterrupt

    monkeypatch.setattr(OpenAIBatchGenerator, "_create_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        make(server, tmp_path).generate(QUESTIONS)
    (state,) = [json.loads(p.read_text()) for p in state_files(tmp_path)]
    assert state["input_file_id"] and state["batch_id"] is None
    monkeypatch.setattr(OpenAIBatchGenerator, "_create_batch", original)

    assert_replies(make(server, tmp_path).generate(QUESTIONS), QUESTIONS)
    assert (server.uploads, server.created) == (1, 1)
    assert server.count("GET", "/v1/batches") >= 1  # looked for a batch made before the kill first


def test_a_lost_create_answer_does_not_start_a_second_batch(server, tmp_path):
    server.lose_create_answers = 1
    assert_replies(make(server, tmp_path).generate(QUESTIONS), QUESTIONS)
    assert (server.uploads, server.created) == (1, 1)


def test_failed_and_missing_lines_are_failures_and_only_they_are_sent_again(server, tmp_path):
    server.fail_markers.add("BAD")
    server.drop_markers.add("LOST")
    convs = conversations("fine one", "BAD one", "fine two", "LOST one")
    cache = ResponseCache(tmp_path / "cache")
    results, stats = generate_cached(make(server, tmp_path), convs, cache=cache)

    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error.startswith("HTTP 400: scripted request failure")
    assert "missing from batch output" in results[3].error
    assert (stats.succeeded, stats.failed) == (2, 2) and {e["index"] for e in stats.errors} == {1, 3}
    assert state_files(tmp_path) == []

    server.fail_markers.clear()
    server.drop_markers.clear()
    results, stats = generate_cached(make(server, tmp_path), convs, cache=cache)
    assert_replies(results, convs)
    assert stats.cache_hits == 2 and server.created == 2
    assert len(server.input_lines(list(server.batches)[-1])) == 2


@pytest.mark.parametrize("outcome", ["failed", "expired", "cancelled"])
def test_a_batch_that_did_not_complete_fails_its_requests_and_a_rerun_submits_anew(server, tmp_path, outcome):
    server.outcomes.append(outcome)
    cache = ResponseCache(tmp_path / "cache")
    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert stats.failed == 6
    assert all(f" {outcome}" in r.error and r.error.startswith("batch ") for r in results)
    if outcome == "failed":
        assert "scripted failure" in results[0].error
    assert state_files(tmp_path) == []

    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert_replies(results, QUESTIONS)
    assert (server.uploads, server.created) == (2, 2)


def test_an_expired_batch_keeps_the_requests_it_finished(server, tmp_path):
    server.outcomes.append("expired")
    server.expired_partial = 2
    cache = ResponseCache(tmp_path / "cache")
    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert (stats.succeeded, stats.failed) == (2, 4)
    results, stats = generate_cached(make(server, tmp_path), QUESTIONS, cache=cache)
    assert_replies(results, QUESTIONS)
    assert stats.cache_hits == 2 and len(server.input_lines(list(server.batches)[-1])) == 4


def test_poll_errors_are_retried(server, tmp_path):
    server.retrieve_errors = 2
    assert_replies(make(server, tmp_path, max_retries=0).generate(QUESTIONS), QUESTIONS)
    assert server.created == 1


def test_a_batch_that_cannot_be_polled_fails_its_requests_and_stays_resumable(server, tmp_path):
    server.retrieve_errors = 10**6
    results = make(server, tmp_path, max_retries=0, max_poll_errors=1).generate(QUESTIONS)
    assert all("rerun to resume" in r.error for r in results)
    assert len(state_files(tmp_path)) == 1

    server.retrieve_errors = 0
    assert_replies(make(server, tmp_path).generate(QUESTIONS), QUESTIONS)
    assert (server.uploads, server.created) == (1, 1)


def test_large_jobs_are_split_into_several_batches(server, tmp_path):
    assert_replies(make(server, tmp_path, max_batch_requests=4).generate(QUESTIONS), QUESTIONS)
    assert (server.uploads, server.created) == (2, 2)
    assert sorted(len(server.input_lines(b)) for b in server.batches) == [2, 4]


def test_the_key_appears_in_no_file_log_or_error(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    server.fail_markers.add("BAD")
    server.echo_auth = True  # a careless server that quotes the Authorization header back
    convs = conversations("fine", "BAD")
    cache = ResponseCache(tmp_path / "cache")

    def interrupt(seconds):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("admap.generate.openai_batch._wait_between_polls", interrupt)
        generate_cached(make(server, tmp_path), convs, cache=cache)
    generator = make(server, tmp_path)
    results, stats = generate_cached(generator, convs, cache=cache)

    assert results[0].ok and not results[1].ok
    assert set(server.auth_headers) == {f"Bearer {FAKE_KEY}"}  # the key was used ...
    assert results[1].error.endswith("(***)")  # ... quoted back by the server, and redacted
    texts = [results[1].error, json.dumps(stats.to_dict()), repr(generator), json.dumps(generator.identity())]
    texts += [record.getMessage() for record in caplog.records]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert caplog.records and not [text for text in texts if FAKE_KEY in text]


def test_a_missing_key_is_a_clear_error_except_for_a_local_server(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIBatchGenerator(model="m", base_url="https://api.example.com/v1")
    with pytest.raises(ValueError, match="MY_KEY"):
        OpenAIBatchGenerator(model="m", api_key_env="MY_KEY")
    assert_replies(make(server, tmp_path).generate(QUESTIONS[:1]), QUESTIONS[:1])  # loopback: a placeholder key


def test_from_options_identity_and_determinism(monkeypatch):
    options = GeneratorOptions(
        generator="openai", generator_model="gpt-x", base_url="http://127.0.0.1:1/v1", max_new_tokens=9, batch_api=True
    )
    generator = OpenAIBatchGenerator.from_options(options, progress=False)
    assert (generator.model, generator.max_tokens, generator.poll_interval) == ("gpt-x", 9, POLL)
    assert generator.identity() == {
        "generator": "openai",
        "model": "gpt-x",
        "base_url": "http://127.0.0.1:1/v1",
        "temperature": 0.0,
        "max_tokens": 9,
        "seed": None,
    }
    assert generator.deterministic
    options.temperature = 0.7
    assert not OpenAIBatchGenerator.from_options(options).deterministic
    options.generation_seed = 1
    assert OpenAIBatchGenerator.from_options(options).deterministic
    monkeypatch.setenv("ADMAP_BATCH_POLL_SECONDS", "soon")
    with pytest.raises(ValueError, match="ADMAP_BATCH_POLL_SECONDS"):
        OpenAIBatchGenerator.from_options(options)


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:8000/v1/"])
def test_batch_and_online_clients_share_one_identity(monkeypatch, base_url):
    """Switching --batch-api on or off reuses the replies already cached."""
    openai_api = pytest.importorskip("admap.generate.openai_api")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    options = GeneratorOptions(generator="openai", generator_model="m", base_url=base_url, generation_seed=5)
    online = openai_api.OpenAIGenerator.from_options(options, progress=False)
    options.batch_api = True
    batch = openai_api.OpenAIGenerator.from_options(options, progress=False)
    assert isinstance(batch, OpenAIBatchGenerator)
    assert batch.identity() == online.identity()
    assert batch.deterministic == online.deterministic


def test_admap_proxy_with_the_batch_api_end_to_end(server, tmp_path):
    pytest.importorskip("admap.generate.openai_api")
    from admap.cli import main

    dataset = tmp_path / "tiny.jsonl"
    rows = [
        {"instruction": f"Name a colour number {i}.", "input": "", "chosen": "Red.", "rejected": "Blue."}
        for i in range(3)
    ]
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run" / "proxies.jsonl"
    argv = ["proxy", str(dataset), "--generator", "openai", "--batch-api", "--base-url", server.url]
    argv += ["--generator-model", "m", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]

    assert main(argv) == 0
    proxies = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(proxies) == 3
    assert all(p["proxy_response"] == f"reply to: {p['instruction']}" for p in proxies)
    summary = json.loads((tmp_path / "run" / "proxies.summary.json").read_text())
    assert summary["generation"]["succeeded"] == 3
    assert (server.uploads, server.created) == (1, 1)

    requests_so_far = len(server.log)
    assert main(argv) == 0
    assert len(server.log) == requests_so_far  # every reply came from the cache
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and FAKE_KEY in p.read_text(errors="replace")]
