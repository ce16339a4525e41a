"""Neighbourhoods of the instructions: near-duplicate groups and contamination with evaluation prompts.

Pure functions over the instructions' embeddings (unit rows, `admap.knn` finds the neighbours) and
their texts; `admap neighbours` (`admap.commands.neighbours`) embeds, searches and writes.

- Near duplicates: two instructions whose cosine is at least a threshold are linked, and each connected
  set of links is a group (as SemDeDup groups by a cosine threshold). Links chain: A and C share a group
  when both are close to B, even if A and C are further apart, so each member's closest other member is
  kept beside it. One member of a group is kept (the first in the dataset's order, as
  ``drop_duplicates`` keeps the first); the others are the ones to drop.
- Contamination: each instruction against evaluation prompts (MT-Bench's first turns and the
  Evol-Instruct test set ship with admap; any prompt file can be added), by two measures. The cosine
  to the nearest prompt catches paraphrases; the share of a prompt's word 8-grams that occur in the
  instruction catches copies inside longer text (8-grams and a 0.5 share are the settings common n-gram
  decontamination scripts use). An instruction is contaminated when either reaches its threshold.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from admap.errors import InputError
from admap.load.readers import iter_jsonl

WORD = re.compile(r"\w+")
NGRAM = 8
# The evaluation sets shipped with admap (admap/evaluation_sets/, each with its licence): name to file.
EVALUATION_SETS = {
    "mt_bench": ("mt_bench", "question.jsonl"),
    "evol_instruct": ("evol_instruct", "WizardLM_testset.jsonl"),
}
# The prompt of a record, by the first of these fields it has (MT-Bench: its first turn), and its id.
PROMPT_FIELDS = ("turns", "prompt", "instruction", "Instruction", "question")
ID_FIELDS = ("question_id", "idx", "id", "prompt_id")
PROMPT_COLUMNS = ["eval_set", "eval_id", "eval_prompt"]


# ---- near duplicates


def near_duplicate_groups(
    instruction_ids: np.ndarray, neighbour_similarities: np.ndarray, neighbour_positions: np.ndarray, threshold: float
) -> pd.DataFrame:
    """The instructions linked to another at cosine ``>= threshold``, one row each, grouped.

    ``neighbour_similarities`` and ``neighbour_positions`` (``(n, k)``, best first; position -1 for none)
    are each instruction's nearest other instructions (`admap.knn.self_neighbours`), in the order of
    ``instruction_ids``. Columns: ``instruction_id``, ``group`` (0, 1, ... in the order of the groups'
    first members), ``group_size``, ``is_kept`` (the group's first member in dataset order),
    ``kept_id``, ``closest_id`` and ``closest_similarity`` (its most similar member of the group).
    Rows are in group order, then dataset order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(instruction_ids)
    linked = (neighbour_similarities >= threshold) & (neighbour_positions >= 0)
    rows = np.broadcast_to(np.arange(n)[:, None], linked.shape)[linked]
    columns = neighbour_positions[linked]
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n)
    members = np.flatnonzero(sizes[component] > 1)
    if not len(members):
        return pd.DataFrame(
            {
                "instruction_id": pd.Series(dtype=object),
                "group": pd.Series(dtype=np.int64),
                "group_size": pd.Series(dtype=np.int64),
                "is_kept": pd.Series(dtype=bool),
                "kept_id": pd.Series(dtype=object),
                "closest_id": pd.Series(dtype=object),
                "closest_similarity": pd.Series(dtype=np.float32),
            }
        )
    # Groups numbered by their first member: `members` is in dataset order, so a component's first
    # occurrence there is its first member.
    first_position = {}
    for position in members:
        first_position.setdefault(component[position], position)
    group_of_component = {c: g for g, c in enumerate(first_position)}
    group = np.array([group_of_component[component[p]] for p in members], dtype=np.int64)
    # The closest member among the k neighbours found (every link is among them).
    same_group = (component[np.clip(neighbour_positions[members], 0, None)] == component[members][:, None]) & (
        neighbour_positions[members] >= 0
    )
    best = np.argmax(same_group, axis=1)
    closest = neighbour_positions[members, best]
    table = pd.DataFrame(
        {
            "instruction_id": instruction_ids[members],
            "group": group,
            "group_size": sizes[component[members]].astype(np.int64),
            "is_kept": np.array([first_position[component[p]] == p for p in members]),
            "kept_id": instruction_ids[[first_position[component[p]] for p in members]],
            "closest_id": instruction_ids[closest],
            "closest_similarity": neighbour_similarities[members, best].astype(np.float32),
        }
    )
    return table.sort_values(["group"], kind="mergesort").reset_index(drop=True)


# ---- contamination


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The word ``n``-grams of ``tokens``; a text shorter than ``n`` words is its one n-gram of all its words."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def ngram_overlaps(
    instructions: Sequence[str], prompts: Sequence[str], n: int = NGRAM
) -> tuple[np.ndarray, np.ndarray]:
    """Per instruction, the largest share of a prompt's word ``n``-grams that occur in it, and that
    prompt's position (-1 where none shares one). A prompt shorter than ``n`` words counts as matched when
    its words occur in that order in the instruction. Exact, through an n-gram to prompts table."""
    prompt_grams = [ngrams(words(prompt), n) for prompt in prompts]
    by_gram: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for position, grams in enumerate(prompt_grams):
        for gram in grams:
            by_gram[gram].append(position)
    # The lengths of the prompts shorter than n words: an instruction is also read in grams of those lengths.
    short = {len(gram) for grams in prompt_grams for gram in grams if len(gram) < n}
    overlap = np.zeros(len(instructions), dtype=np.float32)
    nearest = np.full(len(instructions), -1, dtype=np.int64)
    for row, text in enumerate(instructions):
        tokens = words(text)
        grams = ngrams(tokens, n) | {g for length in short for g in ngrams(tokens, length) if len(tokens) >= length}
        hits: dict[int, int] = defaultdict(int)
        for gram in grams:
            for position in by_gram.get(gram, ()):
                hits[position] += 1
        if hits:
            position, share = max(((p, h / len(prompt_grams[p])) for p, h in hits.items()), key=lambda x: x[1])
            overlap[row], nearest[row] = share, position
    return overlap, nearest


def contamination_table(
    instruction_ids: np.ndarray,
    instructions: Sequence[str],
    prompts: pd.DataFrame,
    nearest_similarity: np.ndarray,
    nearest_position: np.ndarray,
    *,
    similarity_threshold: float,
    ngram_threshold: float,
    n: int = NGRAM,
) -> pd.DataFrame:
    """One row per instruction: its nearest evaluation prompt by embedding (``eval_set``, ``eval_id``,
    ``eval_prompt``, ``similarity``), the largest n-gram overlap with any prompt (``ngram_overlap``, and
    that prompt's ``ngram_eval_set``/``ngram_eval_id``), and ``is_contaminated`` (either at its threshold)
    with ``reason``. ``prompts``: `PROMPT_COLUMNS`; ``nearest_*``: ``(n,)`` from a search of the prompts."""
    overlap, overlap_position = ngram_overlaps(instructions, prompts["eval_prompt"].tolist(), n)
    by_embedding = prompts.iloc[np.clip(nearest_position, 0, None)].reset_index(drop=True)
    by_ngrams = prompts.iloc[np.clip(overlap_position, 0, None)].reset_index(drop=True)
    close = nearest_similarity >= similarity_threshold
    copied = overlap >= ngram_threshold
    reason = np.select(
        [close & copied, close, copied],
        [f"cosine >= {similarity_threshold:g} and n-grams", f"cosine >= {similarity_threshold:g}", f"{n}-grams"],
        default="",
    )
    return pd.DataFrame(
        {
            "instruction_id": instruction_ids,
            "eval_set": by_embedding["eval_set"],
            "eval_id": by_embedding["eval_id"],
            "eval_prompt": by_embedding["eval_prompt"],
            "similarity": nearest_similarity.astype(np.float32),
            "ngram_overlap": overlap,
            "ngram_eval_set": by_ngrams["eval_set"].where(overlap_position >= 0, None),
            "ngram_eval_id": by_ngrams["eval_id"].where(overlap_position >= 0, None),
            "is_contaminated": close | copied,
            "reason": reason,
        }
    )


# ---- evaluation prompts (the edge)


def evaluation_set_path(name: str) -> Path:
    folder, file = EVALUATION_SETS[name]
    return Path(str(resources.files("admap") / "evaluation_sets" / folder / file))


def read_prompts(source: str) -> pd.DataFrame:
    """The prompts of ``source``: a shipped set's name (`EVALUATION_SETS`) or a JSONL file of records with
    a prompt field (`PROMPT_FIELDS`; ``turns``: the first turn) and optionally an id (`ID_FIELDS`, else the
    line number). Columns `PROMPT_COLUMNS`; ``eval_set`` is the set's name or the file's stem. A line that
    is not a JSON object or has no prompt is an `InputError` naming the file, the line and the field."""
    path = evaluation_set_path(source) if source in EVALUATION_SETS else Path(source)
    name = source if source in EVALUATION_SETS else path.stem
    if not path.is_file():
        raise FileNotFoundError(
            f"{source}: neither a shipped evaluation set ({', '.join(EVALUATION_SETS)}) nor a prompt file"
        )
    records = []
    for number, record in iter_jsonl(path):
        field = next((f for f in PROMPT_FIELDS if f in record), None)
        prompt = record.get(field) if field else None
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(str(path), number, field or "/".join(PROMPT_FIELDS), "no prompt text")
        id_field = next((f for f in ID_FIELDS if f in record), None)
        records.append((name, str(record[id_field]) if id_field else str(number), prompt))
    return pd.DataFrame(records, columns=PROMPT_COLUMNS)
