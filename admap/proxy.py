"""Proxy (reference) responses: from a dataset column, a side file, or a generator.

A side file is any readable table with an id (``instruction_id`` or ``prompt_id``) or the
``instruction`` text, and the proxy text (``proxy_response``, ``proxy`` or ``response``).
Instructions the column and file leave without a proxy are written by the generator. A prompt has
one proxy, whichever instructions share it (a repeated UltraFeedback prompt): the authors asked
GPT-4o once per distinct prompt and reused the answer, and so does admap.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from admap.errors import InputError
from admap.generate import Generator, with_system_prompt
from admap.generate.cache import ResponseCache
from admap.generate.runner import GenerationStats, generate_cached
from admap.load.fields import check_text
from admap.load.readers import read_records

logger = logging.getLogger(__name__)

ID_KEYS = ("instruction_id", "prompt_id")
TEXT_KEYS = ("proxy_response", "proxy", "response")


def read_proxy_file(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(by_id, by_instruction_text)`` from a side file; a bad row is an `InputError`."""
    by_id: dict[str, str] = {}
    by_text: dict[str, str] = {}
    for row, record in read_records(path):
        if not isinstance(record, dict):
            raise InputError(path, row, record.field, record.reason)
        text_key = next((k for k in TEXT_KEYS if k in record), None)
        if text_key is None:
            raise InputError(path, row, "proxy_response", f"missing (one of {', '.join(TEXT_KEYS)} is needed)")
        try:
            text = check_text(record[text_key], text_key)
        except ValueError as error:
            raise InputError(path, row, text_key, getattr(error, "reason", str(error))) from None
        id_key = next((k for k in ID_KEYS if record.get(k) is not None), None)
        if id_key is not None:
            by_id[str(record[id_key])] = text
        elif isinstance(record.get("instruction"), str):
            by_text[record["instruction"]] = text
        else:
            raise InputError(path, row, "instruction_id", f"missing (one of {', '.join(ID_KEYS)} or 'instruction')")
    return by_id, by_text


def _share_by_prompt(table: pd.DataFrame) -> None:
    """Give an instruction without a proxy the proxy (and its source) of the first instruction with the
    same prompt that has one, in place."""
    missing = table["proxy_response"].isna()
    if not missing.any() or missing.all():
        return
    known = table.loc[~missing].drop_duplicates("prompt_messages").set_index("prompt_messages")
    for column in ("proxy_response", "proxy_source"):
        shared = table.loc[missing, "prompt_messages"].map(known[column])
        table.loc[missing, column] = shared.where(shared.notna(), table.loc[missing, column])


def attach_proxies(
    instructions: pd.DataFrame,
    *,
    proxy_file: str | None = None,
    generator: Generator | None = None,
    system_prompt: str | None = None,
    cache: ResponseCache | None = None,
    scope: str | None = None,
) -> tuple[pd.DataFrame, GenerationStats | None]:
    """A copy of ``instructions`` with ``proxy_response`` filled and ``proxy_source`` saying from where,
    and the generation counts when anything was generated. Failed or empty replies stay missing."""
    table = instructions.copy()
    has_proxy = table["proxy_response"].notna()
    table["proxy_source"] = pd.Series(np.where(has_proxy, "column", None), index=table.index, dtype=object)
    if proxy_file:
        by_id, by_text = read_proxy_file(proxy_file)
        from_file = table["instruction_id"].map(by_id).astype(object)
        if by_text:
            from_file = from_file.fillna(table["instruction"].map(by_text).astype(object))
        fill = table["proxy_response"].isna() & from_file.notna()
        table.loc[fill, "proxy_response"] = from_file[fill]
        table.loc[fill, "proxy_source"] = "file"
        logger.info("%s: proxies for %d of %d instructions", proxy_file, int(fill.sum()), len(table))
    _share_by_prompt(table)
    missing = table["proxy_response"].isna()
    if not missing.any() or generator is None:
        return table, None
    prompts = table.loc[missing, "prompt_messages"]
    distinct = prompts.drop_duplicates()
    conversations = [with_system_prompt(json.loads(m), system_prompt) for m in distinct]
    logger.info(
        "generating %d proxy responses (%d instructions) with %s", len(conversations), len(prompts), generator.model
    )
    replies, stats = generate_cached(generator, conversations, cache=cache, scope=scope)
    completions = prompts.map(dict(zip(distinct, replies)))
    table.loc[missing, "proxy_response"] = [c.text for c in completions]
    table.loc[missing, "proxy_source"] = [f"generated:{generator.model}" if c.ok else None for c in completions]
    if stats.failed:
        logger.warning(
            "%d of %d proxy requests failed; their instructions stay unscored (first error: %s)",
            stats.failed,
            stats.requests,
            stats.errors[0]["error"],
        )
    return table, stats
