"""Stage 5, select: instruction subsets (regions, same-size random, full) and their DPO pairs.

Pair rules:
- ``annotated`` (the paper's): the dataset's own pairs where it has them (pair datasets);
  otherwise every pair of an instruction's distinct response texts with different ratings,
  the higher rating chosen, ties skipped (up to 6 pairs from 4 responses).
- ``best_vs_random``: the highest-rated response against one random lower-rated response
  (the ultrafeedback_binarized convention).
- ``alignment_score``: every pair ordered by alignment score, ties skipped; for data without labels.

Rules over responses pair texts, not completions: where two completions of an instruction share
a text, the text takes the last rating given to it (`distinct_texts`), as the authors' code does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from admap.datamap import id_run_starts, instruction_codes

PAIR_RULES = ("annotated", "best_vs_random", "alignment_score")
PAIR_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]
# What `preference_pairs` reads of the responses.
PAIR_INPUT_COLUMNS = ["instruction_id", "response_id", "rating", "alignment_score", "same_text_as"]
# Pairs per chunk of `trl_jsonl`: about 50 MB of JSON at UltraFeedback's lengths, one write each (two are held).
JSONL_CHUNK_PAIRS = 1 << 14


def random_instruction_ids(instruction_ids: np.ndarray, size: int, *, seed: int = 42) -> np.ndarray:
    """``size`` instruction ids drawn without replacement, reproducible from ``seed``."""
    if not 0 <= size <= len(instruction_ids):
        raise ValueError(f"size must be within [0, {len(instruction_ids)}], got {size}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(instruction_ids), size=size, replace=False)
    return np.asarray(instruction_ids)[np.sort(chosen)]


def rows_of_instructions(frame: pd.DataFrame, instruction_ids) -> pd.DataFrame:
    """The rows of ``frame`` (responses, pairs) whose ``instruction_id`` is one of ``instruction_ids``,
    in order; a row without an instruction id is never selected."""
    # Series.isin makes one pyarrow scalar of each wanted id at a time (seconds for 10^5 ids); pyarrow's
    # is_in takes the whole set at once, and here looks up each run of equal consecutive ids once.
    column = frame["instruction_id"]
    starts = id_run_starts(column.array)
    run_ids = pa.array(column.iloc[starts])
    wanted = pc.is_in(run_ids, value_set=pa.array(instruction_ids, type=run_ids.type), skip_nulls=True)
    return frame[np.repeat(wanted.to_numpy(zero_copy_only=False), np.diff(starts, append=len(column)))]


# The dtype pd.DataFrame gives a column of text.
_TEXT = pd.Series(["text"]).dtype


def _typed_alike_as_rows(dtype) -> bool:
    """Whether pd.DataFrame, given rows (tuples) of this dtype's values, types their column as ``dtype``."""
    return dtype == _TEXT or (isinstance(dtype, np.dtype) and dtype.kind in "biuf")


def _pair_frame(instruction_ids, chosen_ids, rejected_ids) -> pd.DataFrame:
    """The pairs as pd.DataFrame types a list of ``(instruction_id, chosen_id, rejected_id)`` tuples."""
    columns = (instruction_ids, chosen_ids, rejected_ids)
    if len(chosen_ids) and all(_typed_alike_as_rows(column.dtype) for column in columns):
        return pd.DataFrame(dict(zip(PAIR_COLUMNS, columns)))
    # Other dtypes, and no pairs at all, through the tuples themselves: slower, typed the same by construction.
    return pd.DataFrame(list(zip(*columns)), columns=PAIR_COLUMNS)


def _within_group_pairs(group_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions within each group of consecutive positions (``group_sizes`` long, in
    order), groups in order and, within a group, in ``itertools.combinations`` order."""
    group_starts = np.cumsum(group_sizes) - group_sizes
    pair_counts = group_sizes * (group_sizes - 1) // 2
    pair_starts = np.cumsum(pair_counts) - pair_counts
    first = np.empty(int(pair_counts.sum()), dtype=np.intp)
    second = np.empty_like(first)
    for size in np.unique(group_sizes[group_sizes > 1]):
        groups = np.flatnonzero(group_sizes == size)
        a, b = np.triu_indices(size, k=1)  # row by row: combinations(range(size), 2) order
        slots = pair_starts[groups, None] + np.arange(len(a))
        first[slots] = group_starts[groups, None] + a
        second[slots] = group_starts[groups, None] + b
    return first, second


def _ordered_pairs(responses: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """Every pair of an instruction's responses with unequal values, the higher first; instructions
    in first-appearance order, pairs in ``combinations`` order of the responses in load order."""
    rated = np.flatnonzero(responses[value_column].notna().to_numpy())
    codes, unique_ids = instruction_codes(responses["instruction_id"].iloc[rated])
    # Grouped as a groupby groups (positions into ``rated``): rows without an instruction id left out,
    # instructions in first-appearance order, an instruction's rows in load order.
    grouped = np.flatnonzero(codes >= 0)
    grouped = grouped[np.argsort(codes[grouped], kind="stable")]
    first, second = _within_group_pairs(np.bincount(codes[grouped], minlength=len(unique_ids)))
    first, second = grouped[first], grouped[second]
    values = responses[value_column].to_numpy()[rated]
    unequal = values[first] != values[second]
    first, second = first[unequal], second[unequal]
    first_wins = values[first] > values[second]
    winners, losers = np.where(first_wins, first, second), np.where(first_wins, second, first)
    response_ids = responses["response_id"]
    return _pair_frame(
        unique_ids.take(codes[winners]),
        response_ids.iloc[rated[winners]].reset_index(drop=True),
        response_ids.iloc[rated[losers]].reset_index(drop=True),
    )


def distinct_texts(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per text of an instruction: a response that repeats an earlier text (``same_text_as``)
    is dropped, and the last of them with a rating lends the text its rating and its id, so that the
    pair names the completion whose rating decided it. Responses in their order of first appearance."""
    if "same_text_as" not in responses.columns:  # responses not from a loader: no repeats are marked
        return responses
    repeats = responses["same_text_as"].notna().to_numpy()
    if not repeats.any():
        return responses
    distinct = responses[~repeats].copy()
    rated_repeats = responses[repeats & responses["rating"].notna().to_numpy()]
    last = rated_repeats.drop_duplicates("same_text_as", keep="last")
    position = pd.Series(np.arange(len(distinct)), index=distinct["response_id"].to_numpy())
    rows = position[last["same_text_as"].to_numpy()].to_numpy()
    for column in ("rating", "response_id"):
        values = distinct[column].to_numpy(copy=True)
        values[rows] = last[column].to_numpy()
        distinct[column] = values
    return distinct


def _best_vs_random(responses: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for instruction_id, group in responses.dropna(subset=["rating"]).groupby("instruction_id", sort=False):
        ratings = group["rating"].to_numpy()
        ids = group["response_id"].to_numpy()
        best = int(np.argmax(ratings))  # first of the best on ties, in load order
        lower = np.flatnonzero(ratings < ratings[best])
        if len(lower):
            rows.append((instruction_id, ids[best], ids[rng.choice(lower)]))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def preference_pairs(
    responses: pd.DataFrame,
    *,
    rule: str = "annotated",
    annotated: pd.DataFrame | None = None,
    seed: int = 42,
) -> pd.DataFrame:
    """Chosen/rejected response ids (``instruction_id``, ``chosen_id``, ``rejected_id``).

    ``responses`` needs ``instruction_id``, ``response_id``, ``rating`` and, for the
    ``alignment_score`` rule, ``alignment_score``. ``annotated`` is the dataset's own pairs.
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"rule must be one of {PAIR_RULES}, got {rule!r}")
    if rule == "annotated" and annotated is not None and not annotated.empty:
        return annotated[PAIR_COLUMNS].reset_index(drop=True)
    # Only the columns pairs are made from: filtering the whole table would copy every text.
    responses = distinct_texts(responses[[c for c in PAIR_INPUT_COLUMNS if c in responses.columns]])
    if rule == "annotated":
        if not responses["rating"].notna().any():
            raise ValueError(
                "rule 'annotated' needs ratings or annotated pairs; this data has neither (use rule 'alignment_score')"
            )
        return _ordered_pairs(responses, "rating")
    if rule == "best_vs_random":
        if not responses["rating"].notna().any():
            raise ValueError("rule 'best_vs_random' needs ratings; this data has none")
        return _best_vs_random(responses, seed)
    return _ordered_pairs(responses, "alignment_score")


def trl_records(pairs: pd.DataFrame, instructions: pd.DataFrame, responses: pd.DataFrame) -> list[dict]:
    """TRL's conversational preference format: ``prompt`` / ``chosen`` / ``rejected`` message
    lists, plus ``instruction_id`` and the two response ids for tracing back."""
    ids = pairs[PAIR_COLUMNS]
    # One lookup per column, not per pair: at UltraFeedback's size that is seconds, not minutes.
    prompts = ids["instruction_id"].map(instructions.set_index("instruction_id")["prompt_messages"])
    text_of = responses.set_index("response_id")["response"]
    chosen, rejected = ids["chosen_id"].map(text_of), ids["rejected_id"].map(text_of)
    return [
        {
            "prompt": json.loads(prompt),
            "chosen": [{"role": "assistant", "content": chosen_text}],
            "rejected": [{"role": "assistant", "content": rejected_text}],
            "instruction_id": instruction_id,
            "chosen_id": chosen_id,
            "rejected_id": rejected_id,
        }
        for (instruction_id, chosen_id, rejected_id), prompt, chosen_text, rejected_text in zip(
            ids.itertuples(index=False), prompts.tolist(), chosen.tolist(), rejected.tolist()
        )
    ]


# `json.dumps(value, ensure_ascii=False)` builds this same encoder on every call; one instance encodes alike.
_encode_json = json.JSONEncoder(ensure_ascii=False).encode
# What json.dumps(text, ensure_ascii=False) writes after a backslash for each byte it escapes: '"', '\' and the
# control characters. In UTF-8 these bytes are ASCII and never part of another character's bytes, so a text is
# escaped byte by byte. Each escape is the byte itself, replaced by the backslash, and up to 5 bytes inserted after it.
_ESCAPE_AFTER_BACKSLASH = {
    byte: {ord('"'): '"', ord("\\"): "\\", 8: "b", 9: "t", 10: "n", 12: "f", 13: "r"}.get(byte, f"u{byte:04x}")
    for byte in [*range(0x20), ord('"'), ord("\\")]
}
_INSERTED_LENGTH = np.zeros(256, dtype=np.int64)
_INSERTED = np.zeros((256, 5), dtype=np.uint8)
for _byte, _escape in _ESCAPE_AFTER_BACKSLASH.items():
    _INSERTED_LENGTH[_byte] = len(_escape)
    _INSERTED[_byte, : len(_escape)] = list(_escape.encode())


# Texts per piece of work when escaping: a few megabytes of temporary copies at UltraFeedback's lengths.
_ESCAPE_CHUNK_TEXTS = 8192


def _data_of(texts: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets from 0, bytes)`` of ``texts``: views of its buffers, no copy."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


@dataclass(frozen=True)
class _Piece:
    """An array of strings on its way into `_joined`: its escaped length is known before its bytes are written,
    so that every piece is written once, into the one buffer of the result."""

    texts: pa.LargeStringArray  # no null, or only empty ones
    escaped: np.ndarray  # the positions of the bytes JSON escapes (none if the piece is taken as it is)
    offsets: np.ndarray  # each string's start in the result's bytes, from 0, and the end

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def write(self, into: np.ndarray) -> None:
        _, data = _data_of(self.texts)
        if not len(self.escaped):
            into[:] = data
            return
        lengths = _INSERTED_LENGTH[data[self.escaped]]
        inserted = _INSERTED[data[self.escaped]][np.arange(_INSERTED.shape[1]) < lengths[:, None]]  # in order
        into[:] = np.insert(data, np.repeat(self.escaped + 1, lengths), inserted)  # a temporary of this piece's size
        into[self.escaped + np.cumsum(lengths) - lengths] = ord("\\")  # each escaped byte, moved by those before it


def _piece(texts: pa.LargeStringArray, *, escape: bool) -> _Piece:
    """``texts`` as a `_Piece`: escaped as json.dumps writes a string between its quotes, or as they are."""
    offsets, data = _data_of(texts)
    if texts.null_count and np.diff(offsets)[texts.is_null().to_numpy(zero_copy_only=False)].any():
        texts = pc.fill_null(texts, "")  # a null slot may hold bytes; the arrays pandas and Arrow build give it none
        offsets, data = _data_of(texts)
    if not escape:
        return _Piece(texts, np.empty(0, dtype=np.int64), offsets)
    # Three comparisons over the bytes are faster than a lookup table indexed by each of them.
    escaped = np.flatnonzero((data < 0x20) | (data == ord('"')) | (data == ord("\\")))
    after = np.repeat(escaped + 1, _INSERTED_LENGTH[data[escaped]])
    # Bytes inserted after a text's last byte sit at the next text's start offset and belong to the text before.
    return _Piece(texts, escaped, offsets + np.searchsorted(after, offsets, side="right"))


def _joined(pieces: list[_Piece]) -> pa.LargeStringArray:
    """The pieces' strings in order, in one array, each byte written once."""
    counts = [len(piece.texts) for piece in pieces]
    offsets = np.empty(sum(counts) + 1, dtype=np.int64)
    data = np.empty(sum(piece.nbytes for piece in pieces), dtype=np.uint8)
    row = position = 0
    for piece, count in zip(pieces, counts):
        offsets[row : row + count] = piece.offsets[:-1] + position
        piece.write(data[position : position + piece.nbytes])
        row, position = row + count, position + piece.nbytes
    offsets[-1] = position
    return pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


def _text_chunks(texts: pd.Series) -> Iterator[pa.LargeStringArray]:
    """The texts (strings; missing ones read as empty) as Arrow arrays of at most `_ESCAPE_CHUNK_TEXTS`: a column
    held in Arrow is sliced where it lies, any other converted a chunk at a time."""
    for start in range(0, len(texts), _ESCAPE_CHUNK_TEXTS):
        column = pa.array(texts.iloc[start : start + _ESCAPE_CHUNK_TEXTS], type=pa.large_string())
        yield from column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _escaped_texts(texts: pd.Series) -> list[_Piece]:
    """The texts as JSON strings without their quotes, as pieces to join."""
    return [_piece(chunk, escape=True) for chunk in _text_chunks(texts)]


def _json_ids(ids: pd.Series) -> _Piece:
    """Each id as `json.dumps(id, ensure_ascii=False)` writes it: a string, or a number."""
    if pd.api.types.infer_dtype(ids, skipna=False) == "string":
        quote, nothing = pa.scalar('"', type=pa.large_string()), pa.scalar("", type=pa.large_string())
        quoted = pc.binary_join_element_wise(quote, _joined(_escaped_texts(ids)), quote, nothing)
        return _piece(quoted, escape=False)
    return _piece(pa.array([_encode_json(value) for value in ids.tolist()], type=pa.large_string()), escape=False)


# The JSON between a record's values and after the last: the texts' quotes and message lists lie here, so that
# a response's piece is its escaped text alone, shared by both the records that choose and that reject it.
_ASSISTANT = '[{"role": "assistant", "content": "'
_BETWEEN_VALUES = (
    '{"prompt": ',
    ', "chosen": ' + _ASSISTANT,
    '"}], "rejected": ' + _ASSISTANT,
    '"}], "instruction_id": ',
    ', "chosen_id": ',
    ', "rejected_id": ',
    "}\n",
)


@dataclass(frozen=True)
class TrlFragments:
    """Every piece of JSON that `trl_jsonl` joins into records, in one array, each encoded once however many
    pairs, and pair files, use it: `_BETWEEN_VALUES`; every instruction's prompt (its message list), in the
    order of ``instruction_ids``; every instruction's id; every response's escaped text, in the order of
    ``response_ids``; every response's id. Build with `trl_fragments`."""

    instruction_ids: pd.Index
    response_ids: pd.Index
    pieces: pa.LargeStringArray
    without_text: np.ndarray  # per response: its text is missing (no pair may name it)

    def start_of(self, kind: str) -> int:
        """Where the pieces of ``kind`` (``prompts``, ``instruction_ids``, ``texts``, ``response_ids``) start."""
        n_instructions, n_responses = len(self.instruction_ids), len(self.response_ids)
        starts = np.cumsum([len(_BETWEEN_VALUES), n_instructions, n_instructions, n_responses])
        return int(starts[("prompts", "instruction_ids", "texts", "response_ids").index(kind)])


def _rows_of(ids: pd.Series, index: pd.Index, what: str) -> np.ndarray:
    """The position in ``index`` (unique) of each of ``ids``; an id it lacks is an error."""
    positions = index.get_indexer(ids)
    if (positions < 0).any():
        missing = ids[positions < 0].unique()[:5].tolist()
        raise ValueError(f"pairs name {what} that the tables do not hold (first: {missing})")
    return positions


def trl_fragments(instructions: pd.DataFrame, responses: pd.DataFrame) -> TrlFragments:
    """The fragments of every instruction (``instruction_id``, ``prompt_messages``) and every response
    (``response_id``, ``response``: strings): a map run's pairs files together name nearly all of them."""
    texts = responses["response"]
    without_text = texts.isna().to_numpy()
    # The prompt as trl_records writes it: parsed and encoded again, whatever spacing the table's JSON has.
    prompts = [_encode_json(json.loads(messages)) for messages in instructions["prompt_messages"].tolist()]
    pieces = [
        _piece(pa.array(_BETWEEN_VALUES, type=pa.large_string()), escape=False),
        _piece(pa.array(prompts, type=pa.large_string()), escape=False),
        _json_ids(instructions["instruction_id"]),
        # A missing text is an empty piece, never written: `locate_pairs` refuses the pairs that name it.
        *_escaped_texts(texts),
        _json_ids(responses["response_id"]),
    ]
    return TrlFragments(
        instruction_ids=pd.Index(instructions["instruction_id"]),
        response_ids=pd.Index(responses["response_id"]),
        pieces=_joined(pieces),
        without_text=without_text,
    )


def locate_pairs(pairs: pd.DataFrame, fragments: TrlFragments) -> pd.DataFrame:
    """``pairs`` (`PAIR_COLUMNS`) with the row in ``fragments`` of each one's instruction (``instruction_row``)
    and responses (``chosen_row``, ``rejected_row``): looked up once for the pairs of every subset written."""
    located = pairs[PAIR_COLUMNS].assign(
        instruction_row=_rows_of(pairs["instruction_id"], fragments.instruction_ids, "instructions"),
        chosen_row=_rows_of(pairs["chosen_id"], fragments.response_ids, "responses"),
        rejected_row=_rows_of(pairs["rejected_id"], fragments.response_ids, "responses"),
    )
    named = np.concatenate([located["chosen_row"].to_numpy(), located["rejected_row"].to_numpy()])
    if fragments.without_text[named].any():  # json.dumps would write NaN, which JSON readers (TRL's) refuse
        missing = fragments.response_ids[named[fragments.without_text[named]]].unique()[:5].tolist()
        raise ValueError(f"pairs name responses without text (first: {missing})")
    return located


def trl_jsonl(
    located_pairs: pd.DataFrame, fragments: TrlFragments, *, chunk_pairs: int = JSONL_CHUNK_PAIRS
) -> Iterator[pa.Buffer]:
    """`trl_records`'s records of the pairs as JSON lines, in chunks of up to ``chunk_pairs`` lines: the bytes
    that ``json.dumps(record, ensure_ascii=False) + "\\n"`` gives each record, UTF-8 encoded.
    ``located_pairs`` are pairs as `locate_pairs` gives them for ``fragments`` (`trl_fragments`), or any of
    their rows.

    Columnar: no record is built as a dict. A record is 13 pieces (the JSON before each of its 6 values, the
    value, and its end), so a chunk is one pyarrow ``take`` whose text is the chunk's lines back to back.
    """
    instruction_rows, chosen_rows, rejected_rows = (
        located_pairs[column].to_numpy() for column in ("instruction_row", "chosen_row", "rejected_row")
    )
    # The row in ``fragments.pieces`` of each record's values, in record order.
    values = np.stack(
        [
            fragments.start_of("prompts") + instruction_rows,
            fragments.start_of("texts") + chosen_rows,
            fragments.start_of("texts") + rejected_rows,
            fragments.start_of("instruction_ids") + instruction_rows,
            fragments.start_of("response_ids") + chosen_rows,
            fragments.start_of("response_ids") + rejected_rows,
        ],
        axis=1,
    )
    n_values = values.shape[1]
    for start in range(0, len(located_pairs), chunk_pairs):
        chunk = values[start : start + chunk_pairs]
        order = np.empty((len(chunk), 2 * n_values + 1), dtype=np.int64)
        order[:, 0:-1:2] = np.arange(n_values)  # the JSON before each value
        order[:, 1:-1:2] = chunk
        order[:, -1] = n_values  # the record's end
        lines = fragments.pieces.take(order.ravel())
        # A fresh array without nulls: its data from the first offset to the last is the lines, back to back.
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
        yield lines.buffers()[2][offsets[0] : offsets[len(lines)]]
