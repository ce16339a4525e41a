"""The OpenAI Batch API: half the price of online requests, results within 24 hours, resumable by batch id.

Reached through generator ``openai`` with ``--batch-api``. Each distinct request becomes one line of a
JSONL file uploaded with purpose ``batch``; its ``custom_id`` is the SHA-256 of the request body, so the
same request always has the same id. Right after the upload, and again right after ``batches.create``,
a small state file records the input file id and the batch id (written to a temporary name and renamed
into place). A rerun of the same command finds that state and polls the existing batch instead of
submitting a new one, so a run killed at any moment never pays twice. When a batch has ended, every
request's result is reported through ``on_result`` (so the cache keeps it) and the state file is removed.
A batch that failed, expired or was cancelled reports what it finished and fails the rest, so that a
rerun submits only those. Batches are polled every 30 s, or every ``$ADMAP_BATCH_POLL_SECONDS``.

The API key is read from the environment variable named by ``api_key_env`` when the client is made and
is kept nowhere else: not in the identity, the state files, the uploaded requests, or any message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from admap.generate.base import Completion, Messages, ResultCallback, redact
from admap.generate.openai_endpoint import NO_KEY, OpenAIEndpoint, describe
from admap.generate.options import GeneratorOptions
from admap.models import cache_root

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
POLL_ENV = "ADMAP_BATCH_POLL_SECONDS"
STATE_VERSION = 1
# The Batch API takes at most 50,000 requests and 200 MB per input file.
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 190 * 2**20


def _sha256(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_json_atomic(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class _Job:
    """One submitted (or resumed) batch and the request ids this run still needs from it."""

    key: str
    state: dict
    needed: list[str]
    resumed: bool
    poll_errors: int = 0
    last_seen: tuple | None = None

    @property
    def batch_id(self) -> str:
        return self.state["batch_id"]


@dataclass
class OpenAIBatchGenerator(OpenAIEndpoint):
    """Chat completions through the OpenAI Batch API (any server that implements files and batches).

    ``poll_interval`` is the seconds between status checks (30 by default; ``from_options`` reads it
    from the environment variable ``ADMAP_BATCH_POLL_SECONDS`` when that is set). ``state_dir`` is
    where submitted batches are remembered until their results are in (default
    ``$ADMAP_CACHE/batches``, else ``~/.cache/admap/batches``).
    """

    poll_interval: float = 30.0
    state_dir: str | None = None
    max_poll_errors: int = 20
    max_batch_requests: int = MAX_BATCH_REQUESTS
    max_batch_bytes: int = MAX_BATCH_BYTES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {self.poll_interval}")
        if self.max_batch_requests < 1 or self.max_batch_bytes < 1:
            raise ValueError("max_batch_requests and max_batch_bytes must be >= 1")
        self.api_key()  # fail now, with the variable's name, rather than after loading the dataset

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True):
        """The batch generator for ``options``; ``$ADMAP_BATCH_POLL_SECONDS`` sets the poll interval."""
        poll = os.environ.get(POLL_ENV)
        try:
            poll_interval = float(poll) if poll else 30.0
        except ValueError:
            raise ValueError(f"{POLL_ENV} must be a number of seconds, got {poll!r}") from None
        return cls(**cls.endpoint_settings(options), poll_interval=poll_interval, progress=progress)

    # ----------------------------------------------------------------- requests and state

    def request_body(self, messages: Messages) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    @staticmethod
    def custom_id(body: dict) -> str:
        return _sha256(body)

    @property
    def state_root(self) -> Path:
        return Path(self.state_dir) if self.state_dir else cache_root() / "batches"

    def _state_key(self, custom_ids: Sequence[str]) -> str:
        return _sha256({"base_url": self.base_url, "endpoint": ENDPOINT, "custom_ids": sorted(custom_ids)})

    def _state_path(self, key: str) -> Path:
        return self.state_root / f"{key}.json"

    def _save_state(self, key: str, state: dict) -> None:
        _write_json_atomic(self._state_path(key), state)

    def _forget(self, key: str) -> None:
        self._state_path(key).unlink(missing_ok=True)

    def _saved_states(self) -> list[tuple[str, dict]]:
        if not self.state_root.is_dir():
            return []
        states = []
        for path in sorted(self.state_root.glob("*.json")):
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                logger.warning("ignoring unreadable batch state %s: %s", path, error)
                continue
            if state.get("version") == STATE_VERSION and state.get("base_url") == self.base_url:
                states.append((path.stem, state))
        return states

    # ----------------------------------------------------------------- the client

    def _client(self, key: str):
        import openai

        return openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=self.request_timeout, max_retries=self.max_retries
        )

    # ----------------------------------------------------------------- generate

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        """One completion per conversation; identical conversations are sent once."""
        if not conversations:
            return []
        import openai

        key = self.api_key()
        secret = None if key == NO_KEY else key
        client = self._client(key)
        results: list[Completion | None] = [None] * len(conversations)
        positions: dict[str, list[int]] = {}
        bodies: dict[str, dict] = {}
        for position, messages in enumerate(conversations):
            body = self.request_body(messages)
            cid = self.custom_id(body)
            bodies.setdefault(cid, body)
            positions.setdefault(cid, []).append(position)

        def report(cid: str, completion: Completion) -> None:
            if completion.error:
                completion.error = redact(completion.error, secret)
            for position in positions.pop(cid, []):
                results[position] = completion
                if on_result is not None:
                    on_result(position, completion)

        def fail(cids: Sequence[str], error: str) -> None:
            for cid in cids:
                report(cid, Completion(text=None, error=error))

        def message(error: BaseException) -> str:
            return redact(describe(error), secret)

        jobs = self._resume(client, positions, fail, message, openai)
        claimed = {cid for job in jobs for cid in job.needed}
        fresh = [cid for cid in bodies if cid in positions and cid not in claimed]
        jobs += self._submit(client, fresh, bodies, fail, message, openai)
        try:
            self._wait(client, jobs, positions, bodies, report, fail, message, openai)
        except KeyboardInterrupt:
            waiting = [job.batch_id for job in jobs if self._state_path(job.key).exists()]
            if waiting:
                logger.warning("interrupted; rerun the same command to resume batch(es) %s", ", ".join(waiting))
            raise
        fail([c for c in bodies if c in positions], "no result for this request")  # not expected
        return results  # type: ignore[return-value]

    def _resume(self, client, positions, fail, message, openai) -> list[_Job]:
        """Batches a killed run submitted for some of these requests: poll them rather than submit again."""
        jobs: list[_Job] = []
        claimed: set[str] = set()
        for key, state in self._saved_states():
            needed = [cid for cid in state["custom_ids"] if cid in positions and cid not in claimed]
            if not needed:
                continue
            if not state.get("batch_id"):
                # Killed between the upload and the batch: find the batch if it was made, else make it.
                try:
                    batch = self._create_batch(client, state["input_file_id"], openai, look_first=True)
                except openai.APIStatusError as error:
                    if isinstance(error, _transient(openai)):
                        fail(needed, f"could not start a batch for {state['input_file_id']}: {message(error)}")
                        continue
                    # The upload is gone or refused (expired, say): submit these requests afresh.
                    logger.info("could not reuse upload %s (%s)", state["input_file_id"], message(error))
                    self._forget(key)
                    continue
                except openai.OpenAIError as error:
                    fail(needed, f"could not start a batch for {state['input_file_id']}: {message(error)}")
                    continue
                state["batch_id"] = batch.id
                self._save_state(key, state)
            logger.info(
                "resuming batch %s (%d of its %d requests needed)",
                state["batch_id"],
                len(needed),
                len(state["custom_ids"]),
            )
            jobs.append(_Job(key=key, state=state, needed=needed, resumed=True))
            claimed.update(needed)
        return jobs

    def _chunks(self, cids: list[str], bodies: dict[str, dict]) -> list[list[tuple[str, bytes]]]:
        chunks: list[list[tuple[str, bytes]]] = []
        size = 0
        for cid in cids:
            line = (
                json.dumps(
                    {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": bodies[cid]}, ensure_ascii=False
                ).encode("utf-8")
                + b"\n"
            )
            if not chunks or len(chunks[-1]) >= self.max_batch_requests or size + len(line) > self.max_batch_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append((cid, line))
            size += len(line)
        return chunks

    def _submit(self, client, cids, bodies, fail, message, openai) -> list[_Job]:
        """Upload the requests and start one batch per chunk, remembering each as soon as it exists."""
        jobs = []
        for chunk in self._chunks(cids, bodies):
            ids = [cid for cid, _ in chunk]
            key = self._state_key(ids)
            state = {
                "version": STATE_VERSION,
                "base_url": self.base_url,
                "endpoint": ENDPOINT,
                "model": self.model,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "input_file_id": None,
                "batch_id": None,
                "custom_ids": sorted(ids),
            }
            try:
                upload = client.files.create(
                    file=(f"admap-{key[:16]}.jsonl", b"".join(line for _, line in chunk), "application/jsonl"),
                    purpose="batch",
                    timeout=max(self.request_timeout, 600.0),
                )
            except openai.OpenAIError as error:
                fail(ids, f"could not upload the batch requests: {message(error)}")
                continue
            state["input_file_id"] = upload.id
            self._save_state(key, state)
            try:
                batch = self._create_batch(client, upload.id, openai, look_first=False)
            except openai.OpenAIError as error:
                self._forget(key)
                fail(ids, f"could not start the batch: {message(error)}")
                continue
            state["batch_id"] = batch.id
            self._save_state(key, state)
            logger.info(
                "submitted batch %s: %d requests to %s (input file %s)", batch.id, len(ids), self.model, upload.id
            )
            jobs.append(_Job(key=key, state=state, needed=ids, resumed=False))
        return jobs

    def _create_batch(self, client, input_file_id: str, openai, *, look_first: bool):
        """``batches.create`` without blind retries: after a lost answer, look for the batch before trying again."""
        transient = _transient(openai)
        once = client.with_options(max_retries=0)
        for attempt in range(self.max_retries + 1):
            if look_first or attempt > 0:
                found = self._find_batch(client, input_file_id, openai)
                if found is not None:
                    return found
            try:
                return once.batches.create(input_file_id=input_file_id, endpoint=ENDPOINT, completion_window="24h")
            except transient:
                found = self._find_batch(client, input_file_id, openai)
                if found is not None:
                    return found
                if attempt == self.max_retries:
                    raise
                time.sleep(min(2.0**attempt, 60.0))
        raise AssertionError("unreachable")

    @staticmethod
    def _find_batch(client, input_file_id: str, openai):
        try:
            page = client.batches.list(limit=100)
        except openai.OpenAIError:
            return None
        for batch in page.data:
            if batch.input_file_id == input_file_id:
                return batch
        return None

    def _wait(self, client, jobs, positions, bodies, report, fail, message, openai) -> None:
        """Poll every batch until it ends, then report its results."""
        transient = _transient(openai)
        active = list(jobs)
        while active:
            still = []
            for job in active:
                needed = [cid for cid in job.needed if cid in positions]
                try:
                    batch = client.batches.retrieve(job.batch_id)
                except openai.NotFoundError as error:
                    self._forget(job.key)
                    if job.resumed:
                        logger.warning(
                            "batch %s is gone (%s); submitting its requests again", job.batch_id, message(error)
                        )
                        new = self._submit(client, needed, bodies, fail, message, openai)
                        jobs.extend(new)
                        still.extend(new)
                    else:
                        fail(needed, f"batch {job.batch_id} is gone: {message(error)}")
                    continue
                except transient as error:
                    job.poll_errors += 1
                    if job.poll_errors <= self.max_poll_errors:
                        logger.warning("could not poll batch %s (%s); trying again", job.batch_id, message(error))
                        still.append(job)
                    else:
                        fail(needed, f"could not poll batch {job.batch_id}: {message(error)}; rerun to resume it")
                    continue
                except openai.OpenAIError as error:
                    fail(needed, f"could not poll batch {job.batch_id}: {message(error)}; rerun to resume it")
                    continue
                job.poll_errors = 0
                self._log_progress(job, batch)
                if batch.status in TERMINAL:
                    self._finish(client, job, batch, needed, report, fail, message, openai)
                else:
                    still.append(job)
            active = still
            if active:
                _wait_between_polls(self.poll_interval)

    def _log_progress(self, job: _Job, batch) -> None:
        counts = batch.request_counts
        seen = (batch.status, counts.completed if counts else 0, counts.failed if counts else 0)
        if seen == job.last_seen:
            return
        job.last_seen = seen
        total = counts.total if counts else len(job.state["custom_ids"])
        logger.log(
            logging.INFO if self.progress else logging.DEBUG,
            "batch %s: %s, %d of %d done, %d failed",
            job.batch_id,
            seen[0],
            seen[1],
            total,
            seen[2],
        )

    def _finish(self, client, job: _Job, batch, needed, report, fail, message, openai) -> None:
        wanted = set(needed)
        try:
            lines = [
                line
                for file_id in (batch.output_file_id, batch.error_file_id)
                if file_id
                for line in client.files.content(file_id).content.decode("utf-8").splitlines()
                if line.strip()
            ]
        except openai.OpenAIError as error:
            fail(
                needed, f"could not download the results of batch {job.batch_id}: {message(error)}; rerun to resume it"
            )
            return
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("batch %s: skipping an unreadable result line", job.batch_id)
                continue
            cid = record.get("custom_id")
            if cid in wanted:
                wanted.discard(cid)
                report(cid, _completion(record))
        if wanted:
            if batch.status == "completed":
                error = f"missing from batch output (batch {job.batch_id} completed)"
            else:
                error = f"batch {job.batch_id} {batch.status}{_batch_errors(batch)}"
            fail([cid for cid in needed if cid in wanted], error)
        self._forget(job.key)


def _wait_between_polls(seconds: float) -> None:
    time.sleep(seconds)


def _transient(openai) -> tuple[type[Exception], ...]:
    """Errors after which the same call may well succeed: dropped connections, timeouts, 429 and 5xx."""
    return (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


def _batch_errors(batch) -> str:
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    parts = [
        f"{e.code or 'error'}: {e.message or ''}" + (f" (line {e.line})" if e.line is not None else "")
        for e in errors[:3]
    ]
    return f": {'; '.join(parts)}" if parts else ""


def _completion(record: dict) -> Completion:
    """A result line of a batch's output or error file as a Completion."""
    if record.get("error"):
        error = record["error"]
        if isinstance(error, dict):
            return Completion(text=None, error=f"{error.get('code') or 'error'}: {error.get('message') or ''}")
        return Completion(text=None, error=str(error))
    response = record.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if status != 200:
        detail = body.get("error") if isinstance(body, dict) else None
        text = detail.get("message") if isinstance(detail, dict) else json.dumps(body)[:500]
        return Completion(text=None, error=f"HTTP {status}: {text}")
    usage = body.get("usage") or {}
    tokens = {"tokens_in": usage.get("prompt_tokens") or 0, "tokens_out": usage.get("completion_tokens") or 0}
    choices = body.get("choices") or []
    message = (choices[0].get("message") or {}) if choices else {}
    content = message.get("content")
    # As the online client: the text stripped, and an empty reply is a failure.
    if not isinstance(content, str) or not content.strip():
        refusal = message.get("refusal")
        return Completion(text=None, error=f"empty reply (refusal: {refusal})" if refusal else "empty reply", **tokens)
    return Completion(text=content.strip(), **tokens)
