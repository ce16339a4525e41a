"""A content-addressed disk cache of generated replies.

The key is the SHA-256 of the generator's identity (model and every output-changing setting)
and the full messages, plus a scope for requests that are not deterministic. One small JSON
file per entry, written to a temporary name and renamed into place, so that a killed process
never leaves a torn entry. API keys are not part of any key or entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from admap.generate.base import Completion, Messages
from admap.models import cache_root


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
        try:
            record = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
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
