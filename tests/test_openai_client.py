"""The OpenAI-compatible client against a real chat-completions server on loopback (benchmarks/chat_server.py)."""

import asyncio
import datetime as dt
import email.utils
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from admap.cli import main
from admap.generate import GENERATORS
from admap.generate.openai_api import OpenAIGenerator, retry_after_seconds
from admap.generate.openai_endpoint import NO_KEY, is_local_url
from admap.generate.options import GeneratorOptions
from benchmarks.chat_server import reply_text

FAKE_KEY = "sk-admap-FAKE-0123456789abcdef"
KEY_ENV = "ADMAP_TEST_OPENAI_KEY"


def conversations(n: int, prefix: str = "question") -> list[list[dict]]:
    return [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{prefix} {i}?"}] for i in range(n)
    ]


def make_generator(server, **settings) -> OpenAIGenerator:
    defaults = {
        "model": "test-model",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "progress": False,
        "backoff_base": 0.02,
        "backoff_cap": 0.1,
        "request_timeout": 5.0,
    }
    return OpenAIGenerator(**{**defaults, **settings})


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_normal_replies_and_token_counts(chat_server):
    generator = make_generator(chat_server, seed=7, max_tokens=64, temperature=0.0)
    convs = conversations(5)
    reported = {}
    results = generator.generate(convs, on_result=lambda position, c: reported.setdefault(position, c))
    assert [c.text for c in results] == [reply_text(c) for c in convs]
    assert all(c.ok and c.retries == 0 and c.error is None for c in results)
    # The server's usage: words in the messages, words in the reply.
    assert results[0].tokens_in == 4 and results[0].tokens_out == len(results[0].text.split())
    assert sorted(reported) == list(range(5)) and all(reported[i] is results[i] for i in range(5))
    request = chat_server.requests[0]
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.body["model"] == "test-model"
    assert request.body["temperature"] == 0.0 and request.body["max_tokens"] == 64 and request.body["seed"] == 7
    assert chat_server.count() == 5


def test_identity_deterministic_and_registry():
    generator = OpenAIGenerator(model="gpt-x", base_url="https://api.example.com/v1/", api_key_env=KEY_ENV)
    assert GENERATORS.get("openai") is OpenAIGenerator
    identity = generator.identity()
    assert identity == {
        "generator": "openai",
        "model": "gpt-x",
        "base_url": "https://api.example.com/v1",
        "temperature": 0.0,
        "max_tokens": 256,
        "seed": None,
    }
    assert FAKE_KEY not in json.dumps(identity) and FAKE_KEY not in repr(generator)
    assert generator.deterministic
    assert not OpenAIGenerator(model="m", temperature=0.7).deterministic
    assert OpenAIGenerator(model="m", temperature=0.7, seed=1).deterministic
    assert OpenAIGenerator(model="m").base_url == "https://api.openai.com/v1"


def test_from_options():
    options = GeneratorOptions(
        generator="openai",
        generator_model="gpt-4o-2024-11-20",
        base_url="http://localhost:8000/v1",
        api_key_env="MY_KEY",
        temperature=0.5,
        max_new_tokens=1024,
        generation_seed=3,
        concurrency=16,
        requests_per_minute=500,
        tokens_per_minute=90000,
        max_retries=2,
        request_timeout=30,
    )
    generator = OpenAIGenerator.from_options(options, progress=False)
    assert isinstance(generator, OpenAIGenerator)
    assert (generator.model, generator.base_url, generator.api_key_env) == (
        "gpt-4o-2024-11-20",
        "http://localhost:8000/v1",
        "MY_KEY",
    )
    assert (generator.temperature, generator.max_tokens, generator.seed) == (0.5, 1024, 3)
    assert (generator.concurrency, generator.requests_per_minute, generator.tokens_per_minute) == (16, 500, 90000)
    assert (generator.max_retries, generator.request_timeout, generator.progress) == (2, 30, False)


def test_batch_api_option_hands_over_to_the_batch_generator():
    pytest.importorskip("admap.generate.openai_batch")
    options = GeneratorOptions(generator="openai", generator_model="gpt-4o-mini", api_key_env=KEY_ENV, batch_api=True)
    generator = OpenAIGenerator.from_options(options, progress=False)
    assert type(generator).__name__ == "OpenAIBatchGenerator"


def test_missing_key_names_the_variable(monkeypatch, chat_server):
    monkeypatch.delenv(KEY_ENV)
    remote = OpenAIGenerator(model="m", base_url="https://api.example.invalid/v1", api_key_env=KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        remote.generate(conversations(1))
    # A loopback server (a local vLLM) needs no key.
    local = make_generator(chat_server)
    assert local.generate(conversations(1))[0].ok
    assert chat_server.requests[0].headers["authorization"] == f"Bearer {NO_KEY}"
    assert is_local_url("http://localhost:8000/v1") and is_local_url("http://[::1]:8000/v1")
    assert not is_local_url("https://api.openai.com/v1") and not is_local_url(None)


def test_a_key_given_as_the_variable_name_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="not shown") as raised:
        OpenAIGenerator(model="m", api_key_env=FAKE_KEY)
    assert FAKE_KEY not in str(raised.value)


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0.5", "retry-after-ms": "250"}) == 0.25
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert 28 <= retry_after_seconds({"retry-after": email.utils.format_datetime(future, usegmt=True)}) <= 31
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "999999"}) == 600.0


def test_429_waits_for_retry_after(chat_server):
    chat_server.fail("429", match="question 1?", retry_after="1")
    chat_server.fail("429", match="question 2?", retry_after_ms=300)
    results = make_generator(chat_server).generate(conversations(3))
    assert all(c.ok for c in results)
    assert [c.retries for c in results] == [0, 1, 1]
    for prompt, wait in (("question 1?", 1.0), ("question 2?", 0.3)):
        first, second = [r for r in chat_server.requests if r.prompt == prompt]
        assert first.outcome == "429" and second.outcome == "ok"
        assert second.start - first.end >= wait - 0.01


def test_500s_are_retried_then_succeed(chat_server):
    chat_server.fail("500", match="question 0?", times=2)
    chat_server.fail("503", match="question 1?")
    results = make_generator(chat_server).generate(conversations(3))
    assert all(c.ok for c in results) and [c.retries for c in results] == [2, 1, 0]
    assert chat_server.count("question 0?") == 3


def test_a_persistent_500_is_recorded_and_the_run_goes_on(chat_server):
    chat_server.fail("500", match="question 2?", times=None)
    results = make_generator(chat_server, max_retries=3).generate(conversations(5))
    failed = results[2]
    assert failed.text is None and failed.retries == 3
    assert failed.error.startswith("InternalServerError: Error code: 500")
    assert chat_server.count("question 2?") == 4
    assert all(c.ok for i, c in enumerate(results) if i != 2)


def test_timeouts_are_retried(chat_server):
    chat_server.fail("slow", match="question 1?", seconds=3)
    start = time.monotonic()
    results = make_generator(chat_server, request_timeout=0.4).generate(conversations(2))
    assert all(c.ok for c in results) and results[1].retries == 1
    assert time.monotonic() - start < 2.5


def test_malformed_json_is_retried_then_recorded(chat_server):
    chat_server.fail("malformed", match="question 0?")
    chat_server.fail("malformed", match="question 1?", times=None)
    results = make_generator(chat_server, max_retries=2).generate(conversations(3))
    assert results[0].ok and results[0].retries == 1
    assert results[1].text is None and results[1].retries == 2 and "JSONDecodeError" in results[1].error
    assert results[2].ok


def test_dropped_connections_are_retried(chat_server):
    chat_server.fail("drop", match="question 0?")
    chat_server.fail("cut", match="question 1?")
    chat_server.fail("drop", at=[5])  # the fifth request: one at a time, that is question 2's first
    results = make_generator(chat_server, concurrency=1).generate(conversations(5))
    assert all(c.ok for c in results)
    assert [c.retries for c in results] == [1, 1, 1, 0, 0]
    assert [r.outcome for r in chat_server.requests][:6] == ["drop", "ok", "cut", "ok", "drop", "ok"]


def test_other_4xx_are_not_retried(chat_server):
    chat_server.fail("400", match="question 0?", times=None)
    results = make_generator(chat_server).generate(conversations(2))
    assert results[0].text is None and results[0].retries == 0 and "400" in results[0].error
    assert chat_server.count("question 0?") == 1 and results[1].ok


def test_an_empty_reply_is_a_failure(chat_server):
    chat_server.fail("empty", match="question 0?")
    results = make_generator(chat_server).generate(conversations(2))
    assert results[0].text is None and results[0].error == "empty reply" and results[1].ok


def test_concurrency_is_bounded(chat_server):
    chat_server.latency = 0.1
    results = make_generator(chat_server, concurrency=3).generate(conversations(12))
    assert all(c.ok for c in results)
    assert chat_server.max_in_flight == 3


def test_requests_per_minute(chat_server):
    results = make_generator(chat_server, concurrency=5, requests_per_minute=120).generate(conversations(5))
    assert all(c.ok for c in results)
    starts = sorted(r.start for r in chat_server.requests)
    assert starts[-1] - starts[0] >= 1.9  # one request every 0.5 s
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.45


def test_tokens_per_minute(chat_server):
    # Each request is estimated at 40 / 4 + 10 = 20 tokens; 2400 a minute is 40 a second: one per 0.5 s.
    convs = [[{"role": "user", "content": f"{i:02d}" + "x" * 38}] for i in range(4)]
    generator = make_generator(chat_server, concurrency=4, max_tokens=10, tokens_per_minute=2400)
    assert all(c.ok for c in generator.generate(convs))
    starts = sorted(r.start for r in chat_server.requests)
    assert starts[-1] - starts[0] >= 1.4


def test_results_are_reported_as_they_finish(chat_server):
    chat_server.fail("slow", match="question 0?", seconds=1.5)
    start = time.monotonic()
    when = {}
    make_generator(chat_server, concurrency=4).generate(
        conversations(4), on_result=lambda position, c: when.setdefault(position, time.monotonic() - start)
    )
    assert all(when[i] < 1.0 for i in (1, 2, 3)) and when[0] >= 1.4


def test_generate_from_a_thread_and_from_a_running_loop(chat_server):
    generator = make_generator(chat_server)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("results", generator.generate(conversations(2))))
    thread.start()
    thread.join()
    assert all(c.ok for c in box["results"])

    async def caller():
        return generator.generate(conversations(2))

    assert all(c.ok for c in asyncio.run(caller()))


# -- `admap proxy` end to end -------------------------------------------------------------------------


def write_alpaca(path: Path, instructions: list[str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for instruction in instructions:
            handle.write(json.dumps({"instruction": instruction, "input": "", "chosen": "a", "rejected": "b"}) + "\n")
    return path


def proxy_args(data: Path, server, cache: Path, out: Path, *extra: str) -> list[str]:
    return [
        "proxy",
        str(data),
        "--generator",
        "openai",
        "--base-url",
        server.url,
        "--generator-model",
        "test-model",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        *extra,
    ]


def test_the_key_appears_nowhere(tmp_path, chat_server, monkeypatch, caplog, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    chat_server.fail("401", match="REJECT-ME", times=None)
    chat_server.fail("500", match="Name a colour", times=1)
    data = write_alpaca(tmp_path / "data.jsonl", ["Name a colour.", "Name a fruit.", "REJECT-ME please.", "Count."])
    out = tmp_path / "out" / "proxies.jsonl"
    assert main(proxy_args(data, chat_server, tmp_path / "cache", out, "--max-retries", "2")) == 0

    # The key did go out, so finding it nowhere below means something.
    assert {r.headers["authorization"] for r in chat_server.requests} == {f"Bearer {FAKE_KEY}"}
    summary = json.loads((tmp_path / "out" / "proxies.summary.json").read_text())
    assert summary["proxies_written"] == 3 and len(summary["missing"]) == 1
    assert summary["generation"]["failed"] == 1 and summary["generation"]["retries"] == 1
    (error,) = summary["generation"]["errors"]
    assert error["error"].startswith("AuthenticationError: Error code: 401") and "Bearer ***" in error["error"]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert "REJECT-ME please." not in {r["instruction"] for r in written}
    assert summary["missing"][0] not in {r["instruction_id"] for r in written}

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 5  # data, proxies, summary, three cache entries
    captured = capsys.readouterr()
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "AuthenticationError" in logged  # the failure was logged, redacted
    for secret in (FAKE_KEY, FAKE_KEY[len("sk-admap-") :]):
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
        assert secret not in logged and secret not in captured.out and secret not in captured.err


def test_a_missing_key_stops_the_command_with_the_variable_name(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ADMAP_NO_SUCH_KEY", raising=False)
    data = write_alpaca(tmp_path / "data.jsonl", ["Name a colour."])
    args = [
        "proxy",
        str(data),
        "--generator",
        "openai",
        "--base-url",
        "https://api.example.invalid/v1",
        "--api-key-env",
        "ADMAP_NO_SUCH_KEY",
        "--out",
        str(tmp_path / "proxies.jsonl"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(args) == 2
    assert "ADMAP_NO_SUCH_KEY" in caplog.text


def test_a_second_run_comes_from_the_cache(tmp_path, chat_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    data = write_alpaca(tmp_path / "data.jsonl", [f"Write line {i}." for i in range(6)])
    out = tmp_path / "out" / "proxies.jsonl"
    args = proxy_args(data, chat_server, tmp_path / "cache", out, "--quiet")
    assert main(args) == 0
    first = out.read_bytes()
    assert chat_server.count() == 6
    assert main(args) == 0
    assert chat_server.count() == 6  # not one request more
    assert out.read_bytes() == first
    summary = json.loads((tmp_path / "out" / "proxies.summary.json").read_text())
    assert summary["generation"]["cache_hits"] == 6 and summary["generation"]["tokens_in"] == 0


def test_a_request_cut_off_mid_body_is_not_served(chat_server):
    # What a client killed while sending leaves behind: headers and part of the body.
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(chat_server.url)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "cut off"}]}).encode()
    with socket.create_connection((address.hostname, address.port)) as connection:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        connection.sendall(head.encode() + body[:10])
        connection.shutdown(socket.SHUT_WR)
        assert connection.recv(1) == b""  # closed without an answer
    assert chat_server.count() == 0


@pytest.mark.slow  # two CLI subprocesses: about 8 s
def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, chat_server):
    instructions = [f"Instruction {i}: describe item number {i} briefly." for i in range(30)]
    data = write_alpaca(tmp_path / "data.jsonl", instructions)
    by_reply = {reply_text([{"role": "user", "content": text}]): text for text in instructions}
    cache, out = tmp_path / "cache", tmp_path / "out" / "proxies.jsonl"
    command = [
        sys.executable,
        "-m",
        "admap.cli",
        *proxy_args(data, chat_server, cache, out, "--concurrency", "2"),
    ]
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "HF_HUB_OFFLINE": "1"}
    chat_server.latency = 0.2

    log = (tmp_path / "killed.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*/*.json"))) < 8:
        assert process.poll() is None, (tmp_path / "killed.log").read_text()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL and not out.exists()
    done = {by_reply[json.loads(p.read_text())["text"]] for p in cache.glob("*/*.json")}
    assert len(done) >= 8

    resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr.decode()
    counts = chat_server.counts_by_prompt()
    assert set(counts) == set(instructions)
    assert all(counts[text] == 1 for text in done)  # nothing finished before the kill was asked again
    assert sum(counts.values()) <= len(instructions) + 2  # at most the two in flight at the kill

    chat_server.latency = 0.0
    clean = tmp_path / "clean" / "proxies.jsonl"
    assert main(proxy_args(data, chat_server, tmp_path / "clean-cache", clean, "--concurrency", "2")) == 0
    assert out.read_bytes() == clean.read_bytes()
    assert len(out.read_text().splitlines()) == 30
