"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, ...) through the `openai` package.

Requests run on an asyncio loop: ``concurrency`` workers, each with one request in flight, paced
by ``requests_per_minute`` and ``tokens_per_minute`` (a token estimate of prompt characters / 4
plus ``max_tokens``, corrected by the reply's usage). The SDK's own retries are off; this module
retries 429, 408, 409, 5xx, timeouts, dropped connections and undecodable replies with exponential
backoff and full jitter, waiting at least what ``Retry-After`` / ``retry-after-ms`` asks (a 429's
wait also pauses the other workers). Other 4xx replies are not retried. A request that still
fails becomes a `Completion` with its error, and the run goes on. Each finished request is
reported through ``on_result`` at once, so the cache keeps it even if the run is killed.

The API key is read from the environment variable ``api_key_env`` when `generate` is called.
It is never part of the generator's identity (the cache key), and every error message and log
line that could hold it goes through `redact`. A loopback ``base_url`` (a local vLLM server)
may run without a key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import email.utils
import json
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tqdm.auto import tqdm

from admap.generate.base import GENERATORS, Completion, Messages, ResultCallback, redact
from admap.generate.openai_batch import OpenAIBatchGenerator
from admap.generate.openai_endpoint import NO_KEY, OpenAIEndpoint, describe
from admap.generate.options import DEFAULT_API_MODEL, GeneratorOptions

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Statuses below 500 that are worth retrying (the SDK retries the same ones).
RETRY_STATUSES = frozenset({408, 409, 429})
# A Retry-After longer than this is cut to it, so that a bad header cannot stall a run for days.
MAX_RETRY_AFTER = 600.0
CHARS_PER_TOKEN = 4


class MalformedReply(Exception):
    """A reply that decoded but is not a chat completion."""


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a reply asks to wait: ``retry-after-ms``, or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return min(max(float(milliseconds) / 1000, 0.0), MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(error: BaseException) -> tuple[bool, float | None, int | None]:
    """``(retryable, retry_after, status)`` of a failed request."""
    import openai

    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        retryable = status in RETRY_STATUSES or status >= 500
        return retryable, retry_after_seconds(error.response.headers) if retryable else None, status
    if isinstance(error, openai.APIConnectionError):  # also timeouts (APITimeoutError)
        return True, None, None
    if isinstance(error, (openai.APIResponseValidationError, MalformedReply, json.JSONDecodeError, UnicodeError)):
        return True, None, None
    return False, None, None


def parse_reply(reply: Any) -> tuple[str | None, int, int, str | None]:
    """``(text, tokens_in, tokens_out, refusal)`` of a chat completion; `MalformedReply` if it is none."""
    choices = getattr(reply, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedReply(f"no choices in the reply ({type(reply).__name__})")
    message = getattr(choices[0], "message", None)
    if message is None:
        raise MalformedReply("no message in the reply's first choice")
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"reply content is a {type(content).__name__}, not text")
    usage = getattr(reply, "usage", None)
    tokens_in = getattr(usage, "prompt_tokens", None) or 0
    tokens_out = getattr(usage, "completion_tokens", None) or 0
    refusal = getattr(message, "refusal", None)
    return content, int(tokens_in), int(tokens_out), refusal if isinstance(refusal, str) else None


class Pacer:
    """Spreads ``per_minute`` units evenly: each acquisition starts when the previous one's share has passed.

    A request that costs ``units`` holds the pacer for ``units * 60 / per_minute`` seconds of its
    virtual clock, so that in any minute at most about ``per_minute`` units start.
    """

    def __init__(self, per_minute: float):
        self.seconds_per_unit = 60.0 / per_minute
        self._next = 0.0

    async def acquire(self, units: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next)
        self._next = start + units * self.seconds_per_unit
        if start > now:
            await asyncio.sleep(start - now)

    def adjust(self, units: float) -> None:
        """Correct the last estimate by ``units`` (negative when it was too high)."""
        self._next += units * self.seconds_per_unit


class _Shared:
    """State the workers of one `generate` call share: the rate limits and a 429's pause."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = Pacer(requests_per_minute) if requests_per_minute else None
        self.tokens = Pacer(tokens_per_minute) if tokens_per_minute else None
        self.paused_until = 0.0
        self.retries = 0
        self.failed = 0

    async def before_attempt(self, estimated_tokens: int) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self.paused_until - loop.time()) > 0:
            await asyncio.sleep(wait)
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(estimated_tokens)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, asyncio.get_running_loop().time() + seconds)


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    # Inside a running loop (a notebook, an async caller): run on a fresh loop in another thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="admap-openai") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


@GENERATORS.register("openai")
@dataclass
class OpenAIGenerator(OpenAIEndpoint):
    """Chat completions from any OpenAI-compatible endpoint; see the module docstring."""

    default_model: ClassVar[str] = DEFAULT_API_MODEL
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        for limit in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, limit)
            if value is not None and value <= 0:
                raise ValueError(f"{limit} must be > 0, got {value}")
        self._random = random.Random()

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True):
        if options.batch_api:
            return OpenAIBatchGenerator.from_options(options, device=device, progress=progress)
        return cls(
            **cls.endpoint_settings(options),
            concurrency=options.concurrency,
            requests_per_minute=options.requests_per_minute,
            tokens_per_minute=options.tokens_per_minute,
            progress=progress,
        )

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        if not conversations:
            return []
        key = self.api_key()
        conversations = list(conversations)
        return run_sync(lambda: self._generate(conversations, on_result, key))

    async def _generate(
        self, conversations: list[Messages], on_result: ResultCallback | None, key: str
    ) -> list[Completion]:
        import openai

        results: list[Completion | None] = [None] * len(conversations)
        shared = _Shared(self.requests_per_minute, self.tokens_per_minute)
        positions = iter(range(len(conversations)))
        bar = tqdm(
            total=len(conversations),
            desc=f"generating ({self.model})",
            unit=" req",
            disable=not self.progress,
            dynamic_ncols=True,
        )

        async def worker(client) -> None:
            for position in positions:  # one shared iterator: each position goes to one worker
                completion = await self._request(client, conversations[position], key, shared)
                results[position] = completion
                if on_result is not None:
                    on_result(position, completion)
                if not completion.ok:
                    shared.failed += 1
                bar.update(1)
                if shared.failed or shared.retries:
                    bar.set_postfix(failed=shared.failed, retries=shared.retries, refresh=False)

        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=self.request_timeout)
        workers = [asyncio.ensure_future(worker(client)) for _ in range(min(self.concurrency, len(conversations)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await client.close()
            bar.close()
        failed = sum(1 for r in results if r is not None and not r.ok)
        logger.info(
            "%s: %d of %d requests succeeded, %d failed, %d retries",
            self.model,
            len(results) - failed,
            len(results),
            failed,
            shared.retries,
        )
        return [r for r in results if r is not None]

    def _backoff(self, retries: int, retry_after: float | None) -> float:
        delay = self._random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**retries))
        return max(delay, retry_after) if retry_after is not None else delay

    async def _request(self, client, messages: Messages, key: str, shared: _Shared) -> Completion:
        arguments: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            arguments["seed"] = self.seed
        secret = None if key == NO_KEY else key
        estimate = sum(len(str(m.get("content", ""))) for m in messages) // CHARS_PER_TOKEN + self.max_tokens
        retries = 0
        while True:
            await shared.before_attempt(estimate)
            try:
                reply = await client.chat.completions.create(**arguments)
                text, tokens_in, tokens_out, refusal = parse_reply(reply)
            except Exception as error:  # noqa: BLE001 - every failure is recorded, and the run goes on
                retryable, retry_after, status = classify(error)
                message = redact(describe(error), secret)
                if not retryable or retries >= self.max_retries:
                    level = logging.INFO if retryable or status is not None else logging.WARNING
                    logger.log(level, "request failed after %d retries: %s", retries, message)
                    return Completion(text=None, retries=retries, error=message)
                delay = self._backoff(retries, retry_after)
                retries += 1
                shared.retries += 1
                if status == 429 and retry_after is not None:
                    shared.pause(retry_after)  # the limit is the account's: every worker waits
                    logger.info("rate limited: every request waits %.2f s (%s)", retry_after, message)
                logger.debug("retry %d of %d in %.2f s after %s", retries, self.max_retries, delay, message)
                await asyncio.sleep(delay)
                continue
            if shared.tokens is not None and tokens_in + tokens_out:
                shared.tokens.adjust(tokens_in + tokens_out - estimate)
            if text is None or not text.strip():
                error = f"empty reply (refusal: {redact(refusal, secret)})" if refusal else "empty reply"
                return Completion(text=None, tokens_in=tokens_in, tokens_out=tokens_out, retries=retries, error=error)
            return Completion(text=text.strip(), tokens_in=tokens_in, tokens_out=tokens_out, retries=retries)
