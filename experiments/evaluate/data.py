"""Benchmark inputs: MT-Bench questions, reference answers and judge prompts (FastChat), and the Evol-Instruct set.

Each reader takes a local path (the benchmark's folder, laid out as FastChat's ``data/mt_bench``, or the file
itself) or a Hugging Face hub dataset id, read through ``datasets.load_dataset``. A bad row is an `InputError`
naming the file, the row (1-based line of a JSONL file, record number of a hub dataset) and the field.

Layouts read:

- MT-Bench ``question.jsonl``: ``{question_id, category, turns: [str, ...]}`` (hub: HuggingFaceH4/mt_bench_prompts,
  ``{prompt_id, category, prompt: [str, ...], reference: [str, ...]}``);
- ``reference_answer/gpt-4.jsonl``: FastChat answer records ``{question_id, choices: [{turns: [str, ...]}]}``;
- ``judge_prompts.jsonl``: ``{name, type, system_prompt, prompt_template, output_format}``;
- Evol-Instruct ``WizardLM_testset.jsonl``: ``{idx, Skill, Difficulty, Instruction}`` (218 rows).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from admap.errors import InputError
from admap.generate.base import Messages
from admap.load.readers import iter_jsonl

logger = logging.getLogger(__name__)

QuestionId = int | str

QUESTION_FILE = "question.jsonl"
REFERENCE_DIR = "reference_answer"
REFERENCE_MODEL = "gpt-4"
JUDGE_PROMPT_FILE = "judge_prompts.jsonl"
EVOL_INSTRUCT_FILE = "WizardLM_testset.jsonl"
PROMPT_TYPES = ("single", "pairwise")


@dataclass(frozen=True)
class Question:
    """One benchmark question: ``turns`` holds the user messages in order (MT-Bench: 2, Evol-Instruct: 1)."""

    question_id: QuestionId
    category: str
    turns: tuple[str, ...]


@dataclass(frozen=True)
class FastChatPrompt:
    """One entry of FastChat's ``judge_prompts.jsonl``; ``type`` is ``single`` or ``pairwise``."""

    name: str
    type: str
    system_prompt: str
    template: str
    output_format: str

    def messages(self, **fields: str) -> Messages:
        """The judge conversation: the system prompt, then the template filled with ``fields``.

        One ``str.format`` pass over the template, as FastChat does, so braces inside questions
        and answers stay as they are.
        """
        messages = [{"role": "user", "content": self.template.format(**fields)}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages


# --- Rows ------------------------------------------------------------------------------------------------------


def _iter_hub(name: str, split: str) -> Iterator[tuple[int, dict]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:  # datasets raises many types for offline, missing and gated datasets
        raise InputError(
            name,
            None,
            None,
            f"not a local path, and loading it from the Hugging Face hub failed ({type(error).__name__}: {error}); "
            "pass a local file or folder instead (e.g. FastChat's data/mt_bench)",
        ) from error
    for number, record in enumerate(dataset, start=1):
        yield number, dict(record)


def _rows(source: str | Path, default_file: str, *, split: str = "train") -> tuple[str, Iterator[tuple[int, dict]]]:
    """``(name, rows)`` of ``source``: a file, a folder holding ``default_file``, or a hub dataset id."""
    path = Path(source)
    if path.is_dir():
        path = path / default_file
        if not path.is_file():
            raise FileNotFoundError(f"{source} has no {default_file}")
    if path.is_file():
        return str(path), iter_jsonl(path)
    text = str(source)
    # A hub id is "owner/name"; anything else that does not exist is a mistyped path.
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith((".jsonl", ".json")):
        return text, _iter_hub(text, split)
    raise FileNotFoundError(f"no such file or folder: {source}")


def _field(record: dict, names: Sequence[str], file: str, row: int, *, required: bool = True):
    """The value of the first of ``names`` present in ``record`` (aliases across layouts)."""
    for name in names:
        if name in record and record[name] is not None:
            return record[name]
    if required:
        raise InputError(file, row, names[0], "missing")
    return None


def _question_id(value, file: str, row: int, field: str) -> QuestionId:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise InputError(file, row, field, f"must be an integer or a non-empty string, got {value!r}")
    return value


def _texts(value, file: str, row: int, field: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(file, row, field, f"must be a non-empty list of strings, got {type(value).__name__}")
    for position, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise InputError(file, row, f"{field}[{position}]", "must be a non-empty string")
    return tuple(value)


def _check_new(question_id: QuestionId, seen: set[QuestionId], file: str, row: int, field: str) -> None:
    if question_id in seen:
        raise InputError(file, row, field, f"question {question_id!r} appears twice")
    seen.add(question_id)


# --- Readers ---------------------------------------------------------------------------------------------------


def read_questions(source: str | Path) -> list[Question]:
    """MT-Bench questions from ``question.jsonl`` (or its folder), or a hub dataset such as
    HuggingFaceH4/mt_bench_prompts (``prompt_id`` / ``prompt`` are read as ``question_id`` / ``turns``)."""
    name, rows = _rows(source, QUESTION_FILE)
    questions, seen = [], set()
    for row, record in rows:
        question_id = _question_id(_field(record, ("question_id", "prompt_id"), name, row), name, row, "question_id")
        _check_new(question_id, seen, name, row, "question_id")
        category = _field(record, ("category",), name, row)
        if not isinstance(category, str) or not category.strip():
            raise InputError(name, row, "category", f"must be a non-empty string, got {category!r}")
        turns = _texts(_field(record, ("turns", "prompt"), name, row), name, row, "turns")
        questions.append(Question(question_id, category, turns))
    if not questions:
        raise InputError(name, None, None, "holds no questions")
    return questions


def read_reference_answers(source: str | Path, *, model: str = REFERENCE_MODEL) -> dict[QuestionId, tuple[str, ...]]:
    """``{question_id: reference turns}`` from FastChat's ``reference_answer/<model>.jsonl`` (or the benchmark
    folder holding it), or the ``reference`` column of a hub dataset (questions without one are left out)."""
    path = Path(source)
    default = f"{REFERENCE_DIR}/{model}.jsonl"
    name, rows = _rows(source, default)
    hub = not path.exists()
    references: dict[QuestionId, tuple[str, ...]] = {}
    seen: set[QuestionId] = set()
    for row, record in rows:
        field = "prompt_id" if hub and "question_id" not in record else "question_id"
        question_id = _question_id(_field(record, (field,), name, row), name, row, field)
        if hub:
            value = record.get("reference")
            if not value:
                continue
            turns = _texts(value, name, row, "reference")
        else:
            choices = _field(record, ("choices",), name, row)
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise InputError(name, row, "choices", "must be a non-empty list of {index, turns} objects")
            turns = _texts(choices[0].get("turns"), name, row, "choices[0].turns")
        _check_new(question_id, seen, name, row, field)
        references[question_id] = turns
    return references


def read_judge_prompts(source: str | Path) -> dict[str, FastChatPrompt]:
    """``{name: prompt}`` from FastChat's ``judge_prompts.jsonl`` (or the benchmark folder holding it)."""
    name, rows = _rows(source, JUDGE_PROMPT_FILE)
    prompts: dict[str, FastChatPrompt] = {}
    for row, record in rows:
        values = {}
        for field in ("name", "type", "system_prompt", "prompt_template", "output_format"):
            value = _field(record, (field,), name, row)
            if not isinstance(value, str) or (field != "system_prompt" and not value.strip()):
                raise InputError(name, row, field, f"must be a non-empty string, got {value!r}")
            values[field] = value
        if values["type"] not in PROMPT_TYPES:
            raise InputError(name, row, "type", f"must be one of {PROMPT_TYPES}, got {values['type']!r}")
        if values["name"] in prompts:
            raise InputError(name, row, "name", f"prompt {values['name']!r} appears twice")
        prompts[values["name"]] = FastChatPrompt(
            values["name"], values["type"], values["system_prompt"], values["prompt_template"], values["output_format"]
        )
    return prompts


def read_evol_instruct(source: str | Path) -> list[Question]:
    """The Evol-Instruct test set (``WizardLM_testset.jsonl`` or its folder, or a hub id) as one-turn questions:
    ``question_id`` from ``idx``, ``category`` from ``Skill``."""
    name, rows = _rows(source, EVOL_INSTRUCT_FILE)
    questions, seen = [], set()
    for row, record in rows:
        question_id = _question_id(_field(record, ("idx", "id"), name, row), name, row, "idx")
        _check_new(question_id, seen, name, row, "idx")
        instruction = _field(record, ("Instruction", "instruction"), name, row)
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(name, row, "Instruction", "must be a non-empty string")
        skill = _field(record, ("Skill", "skill"), name, row, required=False)
        questions.append(Question(question_id, str(skill) if skill else "", (instruction,)))
    if not questions:
        raise InputError(name, None, None, "holds no instructions")
    return questions


def select_questions(
    questions: Sequence[Question],
    *,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    question_ids: Sequence[QuestionId] | None = None,
) -> list[Question]:
    """The questions of ``categories`` and ``question_ids`` (each None: all), in file order, then the first ``limit``.

    An unknown category or id is an error (with close matches), not an empty selection.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    selected = list(questions)
    if categories is not None:
        known = sorted({q.category for q in questions})
        unknown = [c for c in categories if c not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown categories {unknown}{hint} (known: {', '.join(known)})")
        selected = [q for q in selected if q.category in set(categories)]
    if question_ids is not None:
        known_ids = {q.question_id for q in questions}
        unknown = [i for i in question_ids if i not in known_ids]
        if unknown:
            raise ValueError(f"unknown question ids {unknown}")
        wanted = set(question_ids)
        selected = [q for q in selected if q.question_id in wanted]
    return selected[:limit] if limit is not None else selected
