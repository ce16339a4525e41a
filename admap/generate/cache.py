"""A content-addressed disk cache of generated replies.

The key is the SHA-256 of the generator's identity (model and every output-changing setting)
and the full messages, plus a scope for requests that are not deterministic. One small JSON
file per entry, written to a temporary name and renamed into place, so that a killed process
never leaves a torn entry. API keys are not part of any key or entry.

An entry is used only when it is what `ResponseCache.put` writes: a JSON object whose ``text`` is a
string (an empty one too: a model may answer with nothing) and whose token counts, where present, are
non-negative integers. Anything else (a damaged file, ``{}``, ``[]``, ``{"text": null}``, a number) is
a miss, with a warning naming the file, so that the request is sent again and its entry rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from admap.generate.base import Completion, Messages
from admap.models import cache_root

logger = logging.getLogger(__name__)
TOKEN_FIELDS = ("tokens_in", "tokens_out")


def default_cache_dir() -> Path:
    return cache_root() / "generations"


def request_key(identity: dict, messages: Messages, scope: str | None = None) -> str:
    payload = json.dumps(
        {"identity": identity, "messages": messages, "scope": scope}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        """The cached reply, or None when there is none or its entry is not a reply (then with a warning)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(data)
        except ValueError as error:  # not UTF-8, or not JSON: a damaged or overwritten file
            problem = f"not JSON: {error}"
        else:
            problem = entry_problem(record)
        if problem:
            logger.warning("reply cache entry %s is unusable (%s): the request is sent again", path, problem)
            return None
        return Completion(
            text=record["text"],
            tokens_in=record.get("tokens_in", 0),
            tokens_out=record.get("tokens_out", 0),
            cached=True,
        )

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful completion; failures are never cached, so a rerun retries them."""
        if not completion.ok:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"text": completion.text, "tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out}
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


def entry_problem(record: object) -> str | None:
    """Why ``record`` (a parsed entry) is not a cached reply, or None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {_json_type(record)}, not an object"
    if "text" not in record:
        return "no text"
    if not isinstance(record["text"], str):
        return f"its text is {_json_type(record['text'])}, not a string"
    for name in TOKEN_FIELDS:
        count = record.get(name, 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return f"its {name} is {count!r}, not a count"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string"}[type(value)]
