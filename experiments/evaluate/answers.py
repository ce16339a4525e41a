"""A model's answers to benchmark questions, in FastChat's answer format, and their files.

A record is ``{question_id, answer_id, model_id, choices: [{index: 0, turns: [str, ...]}], tstamp}`` as FastChat's
``gen_model_answer`` writes it, plus admap's ``turn_errors`` (per turn: None, or why it failed) and ``generation``
(the generator's identity: model and decoding settings, never an API key). A turn whose generation failed holds
FastChat's error marker ``$ERROR$``; it is counted and logged, never dropped, and not judged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from admap.errors import InputError
from admap.generate.base import Generator
from admap.generate.cache import ResponseCache
from admap.generate.runner import generate_cached
from admap.load.readers import iter_jsonl
from admap_experiments.evaluate.data import Messages, Question, QuestionId

logger = logging.getLogger(__name__)

# FastChat's API_ERROR_OUTPUT: what its answer generators record for a failed request.
ERROR_MARKER = "$ERROR$"
ANSWER_DIR = "model_answer"


def safe_name(name: str) -> str:
    """``name`` (a model id such as ``org/model``) as one path component."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def answer_file(out_dir: str | Path, model_id: str) -> Path:
    """FastChat's layout: ``<out_dir>/model_answer/<model_id>.jsonl``."""
    return Path(out_dir) / ANSWER_DIR / f"{safe_name(model_id)}.jsonl"


def answer_turns(record: dict) -> list[str]:
    """The answer's turns (of its first choice, as FastChat judges)."""
    return record["choices"][0]["turns"]


def failed_turns(record: dict) -> int:
    """How many of the record's turns hold the error marker."""
    return sum(1 for text in answer_turns(record) if text == ERROR_MARKER)


def turn_conversation(
    question: Question, earlier_answers: Sequence[str], turn: int, system_prompt: str | None
) -> Messages:
    """The conversation that asks turn ``turn`` (0-based): the earlier turns with the model's own answers."""
    messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for asked, answered in zip(question.turns[:turn], earlier_answers):
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    messages.append({"role": "user", "content": question.turns[turn]})
    return messages


def generate_answers(
    questions: Sequence[Question],
    generator: Generator,
    *,
    model_id: str,
    path: str | Path | None = None,
    system_prompt: str | None = None,
    cache: ResponseCache | None = None,
    scope: str | None = None,
) -> list[dict]:
    """FastChat answer records for ``questions``, in their order.

    Turn k of every question is generated in one ``generator.generate`` call, with each conversation holding
    the model's own answers to the earlier turns (as FastChat's ``gen_model_answer`` does). A failed turn is
    recorded as ``$ERROR$`` with its error in ``turn_errors``, and the question's later turns are not asked.

    With ``path`` (``answer_file(out_dir, model_id)``), answers already there are kept and not regenerated
    (records with a failed turn are retried), and the file is rewritten sorted by question id, as FastChat's
    ``reorg_answer_file`` does; other questions' records in it are kept. ``cache`` and ``scope`` go to
    `admap.generate.runner.generate_cached`, so that a run killed mid-way keeps the replies it had.
    """
    existing = _model_answers(path, model_id) if path is not None else {}
    done = _complete_answers(questions, existing)
    todo = [q for q in questions if q.question_id not in done]
    if done:
        logger.info("%s: %d of %d answers already in %s", model_id, len(done), len(questions), path)

    texts: dict[QuestionId, list[str]] = {q.question_id: [] for q in todo}
    errors: dict[QuestionId, list[str | None]] = {q.question_id: [] for q in todo}
    for turn in range(max((len(q.turns) for q in todo), default=0)):
        asked = [q for q in todo if turn < len(q.turns)]
        alive = [q for q in asked if ERROR_MARKER not in texts[q.question_id]]
        conversations = [turn_conversation(q, texts[q.question_id], turn, system_prompt) for q in alive]
        completions, _ = generate_cached(generator, conversations, cache=cache, scope=scope)
        outcome = {q.question_id: c for q, c in zip(alive, completions)}
        for question in asked:
            completion = outcome.get(question.question_id)
            if completion is not None and completion.ok:
                texts[question.question_id].append(completion.text)
                errors[question.question_id].append(None)
            else:
                reason = completion.error if completion is not None else "an earlier turn failed"
                texts[question.question_id].append(ERROR_MARKER)
                errors[question.question_id].append(reason or "generation failed")

    identity = generator.identity()
    new = {
        q.question_id: {
            "question_id": q.question_id,
            "answer_id": uuid.uuid4().hex[:22],
            "model_id": model_id,
            "choices": [{"index": 0, "turns": texts[q.question_id]}],
            "tstamp": time.time(),
            "turn_errors": errors[q.question_id],
            "generation": identity,
        }
        for q in todo
    }
    failed = sum(failed_turns(r) for r in new.values())
    if failed:
        logger.warning(
            "%s: %d of %d new answer turns failed (recorded as %s)",
            model_id,
            failed,
            sum(len(t) for t in texts.values()),
            ERROR_MARKER,
        )
    if path is not None and new:
        write_jsonl(path, sorted({**existing, **new}.values(), key=_id_order))
    return [done.get(q.question_id) or new[q.question_id] for q in questions]


def unanswered(questions: Sequence[Question], path: str | Path, *, model_id: str) -> list[Question]:
    """The questions that `generate_answers` would ask with this ``path``: those without a complete answer there."""
    done = _complete_answers(questions, _model_answers(path, model_id))
    return [q for q in questions if q.question_id not in done]


def _model_answers(path: str | Path, model_id: str) -> dict[QuestionId, dict]:
    existing = {r["question_id"]: r for r in read_answers(path)} if Path(path).exists() else {}
    others = sorted({r["model_id"] for r in existing.values()} - {model_id})
    if others:
        # Another model's answers would pass for this one's and never be generated.
        raise ValueError(f"{path} holds answers of {others}, not of {model_id!r}; give each model its own file")
    return existing


def _complete_answers(questions: Sequence[Question], existing: dict[QuestionId, dict]) -> dict[QuestionId, dict]:
    # Complete: every turn answered, none failed (a failed turn is retried).
    return {
        q.question_id: existing[q.question_id]
        for q in questions
        if q.question_id in existing
        and len(answer_turns(existing[q.question_id])) == len(q.turns)
        and not failed_turns(existing[q.question_id])
    }


def _id_order(record: dict) -> tuple:
    # FastChat ids are integers; a file may mix in strings, which sort after them.
    question_id = record["question_id"]
    return (isinstance(question_id, str), question_id if isinstance(question_id, int) else str(question_id))


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line, to a temporary file renamed into place (a killed run leaves no torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_answers(path: str | Path) -> list[dict]:
    """FastChat answer records from ``path`` (``model_answer/<model>.jsonl``); a bad row is an `InputError`.

    A question answered twice keeps its later line, as FastChat's ``load_model_answers`` does (logged).
    """
    path = Path(path)
    records: dict[QuestionId, dict] = {}
    for row, record in iter_jsonl(path):
        question_id = record.get("question_id")
        if isinstance(question_id, bool) or not isinstance(question_id, (int, str)) or question_id == "":
            raise InputError(
                str(path), row, "question_id", f"must be an integer or a non-empty string, got {question_id!r}"
            )
        if not isinstance(record.get("model_id"), str):
            raise InputError(str(path), row, "model_id", "must be a string")
        choices = record.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise InputError(str(path), row, "choices", "must be a non-empty list of {index, turns} objects")
        turns = choices[0].get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise InputError(str(path), row, "choices[0].turns", "must be a non-empty list of strings")
        if question_id in records:
            logger.warning("%s, row %d: question %r answered again; the later answer is used", path, row, question_id)
        records[question_id] = record
    return list(records.values())


def answers_to(questions: Sequence[Question], path: str | Path) -> list[dict]:
    """The records in ``path`` (as `read_answers` reads them) that answer ``questions``, in their order."""
    records = {r["question_id"]: r for r in read_answers(path)}
    missing = [q.question_id for q in questions if q.question_id not in records]
    if missing:
        raise ValueError(f"{path} holds no answer to question(s) {missing}")
    return [records[q.question_id] for q in questions]


def index_answers(records: Sequence[dict], *, what: str = "answers") -> dict[QuestionId, dict]:
    """``{question_id: record}``; a question answered twice, or records of several models, are errors."""
    models = sorted({r["model_id"] for r in records})
    if len(models) > 1:
        raise ValueError(f"{what} mix models {models}; pass one model's answers")
    indexed: dict[QuestionId, dict] = {}
    for record in records:
        if record["question_id"] in indexed:
            raise ValueError(f"{what}: question {record['question_id']!r} is answered twice")
        indexed[record["question_id"]] = record
    return indexed
