"""The columnar pairs writer (`trl_fragments` + `trl_jsonl`) writes, byte for byte, what the per-record
writer wrote before it: ``json.dumps(record, ensure_ascii=False) + "\\n"`` of each of `trl_records`'s
records. Checked on real data (HH-RLHF's multi-turn prompts, the pair and chat formats, raw UltraFeedback
with its quirks), on texts chosen for JSON's escapes, under every pair rule, and through `admap map`."""

import json

import numpy as np
import pandas as pd
import pytest

from admap.commands.map import MAP_STRATEGIES, map_subset_ids
from admap.load import load_preferences
from admap.select import (
    PAIR_RULES,
    locate_pairs,
    preference_pairs,
    rows_of_instructions,
    trl_fragments,
    trl_jsonl,
    trl_records,
)
from admap_baselines import SelectionInputs
from tests.runs import map_without_models
from tests.ultrafeedback_raw import build_rows, write_fixture

FIXTURES = "tests/fixtures"

# Every byte JSON escapes, at a text's start, middle and end (the last byte's escape sits at the next
# text's offset), beside characters of two, three and four UTF-8 bytes and ones JSON leaves as they are.
ODD_TEXTS = [
    "",
    '"',
    "\\",
    "ends with a newline\n",
    '\ttabs, "quotes", back\\slashes, \r\n and \b\f',
    "".join(map(chr, range(0x20))) + "\x7f",
    "\x00 starts with a NUL and ends with one \x1b",
    "é, 中文, 🙂 and 👩‍👩‍👧, \u2028 \u2029 \ufeff",
    "combining: e\u0301 and a right-to-left mark \u200f",
    "x" * 10_000,
]


def per_record_bytes(pairs, instructions, responses) -> bytes:
    """The previous writer: `trl_records`, then one ``json.dumps`` per record (`durable.write_jsonl`)."""
    records = trl_records(pairs, instructions, responses)
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()


def columnar_bytes(pairs, instructions, responses, **options) -> bytes:
    fragments = trl_fragments(instructions, responses)
    return b"".join(trl_jsonl(locate_pairs(pairs, fragments), fragments, **options))


def with_scores(responses: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The responses with alignment scores (a few tied) for the ``alignment_score`` rule."""
    scores = np.random.default_rng(seed).integers(0, 5, len(responses)) / 4
    return responses.assign(alignment_score=scores.astype(np.float32))


def assert_writers_agree(data, rule: str) -> int:
    responses = with_scores(data.responses)
    if responses["rating"].isna().all():  # pair datasets: ratings for best_vs_random, from the scores
        responses["rating"] = responses["alignment_score"].astype(float) * 4
    pairs = preference_pairs(responses, rule=rule, annotated=data.preferences)
    expected = per_record_bytes(pairs, data.instructions, responses)
    assert columnar_bytes(pairs, data.instructions, responses) == expected
    return len(pairs)


@pytest.fixture(scope="module")
def hh_rlhf(hh_rlhf_path):
    return load_preferences(str(hh_rlhf_path), format="hh_rlhf", progress=False)


@pytest.mark.parametrize("rule", PAIR_RULES)
def test_hh_rlhf_multi_turn_prompts(hh_rlhf, rule):
    turns = hh_rlhf.instructions["prompt_messages"].map(lambda messages: len(json.loads(messages)))
    assert turns.max() > 2  # multi-turn conversations are in the prompts written
    assert assert_writers_agree(hh_rlhf, rule) > 1000


@pytest.mark.parametrize("rule", PAIR_RULES)
@pytest.mark.parametrize(
    ("name", "format"),
    [
        ("alpaca_pairs.jsonl", "alpaca"),
        ("trl_conversational.jsonl", "auto"),
        ("binarized.jsonl", "auto"),
        ("hh_rlhf.jsonl", "hh_rlhf"),
    ],
)
def test_pair_and_chat_formats(name, format, rule):
    data = load_preferences(f"{FIXTURES}/{name}", format=format, progress=False)
    assert assert_writers_agree(data, rule) > 0


@pytest.mark.parametrize("rule", PAIR_RULES)
def test_raw_ultrafeedback_with_its_quirks(tmp_path, rule):
    data_path, _, _ = write_fixture(tmp_path)  # repeats, empty and shared texts, ties, three completions
    data = load_preferences(str(data_path), format="ultrafeedback", progress=False)
    assert (data.responses["response"] == "").any() and data.responses["same_text_as"].notna().any()
    assert assert_writers_agree(data, rule) >= 40  # one pair per instruction under best_vs_random


def odd_tables(ids_as_numbers: bool = False):
    """Instructions whose prompts are ``ODD_TEXTS`` in several turns (their JSON in other spacing and with
    ASCII escapes, which the writers re-encode alike), four responses each of ``ODD_TEXTS``, and ratings."""
    instructions, responses = [], []
    for i, text in enumerate(ODD_TEXTS):
        messages = [{"role": "system", "content": text}, {"role": "user", "content": f"{i}: {text}"}]
        if i % 2:
            messages.append({"role": "assistant", "content": text[::-1]})
            messages.append({"role": "user", "content": "and again?"})
        spacing = {"separators": (",", ":"), "ensure_ascii": True} if i % 3 == 0 else {"ensure_ascii": False}
        instructions.append(
            {"instruction_id": i if ids_as_numbers else f"odd-{i}", "prompt_messages": json.dumps(messages, **spacing)}
        )
        for k in range(4):
            responses.append(
                {
                    "instruction_id": instructions[-1]["instruction_id"],
                    "response_id": 100 * i + k if ids_as_numbers else f'odd-{i}-"{k}"\n',
                    "response": ODD_TEXTS[(i + k) % len(ODD_TEXTS)],
                    "rating": float((i * 7 + k * 3) % 5),
                }
            )
    return pd.DataFrame(instructions), with_scores(pd.DataFrame(responses))


@pytest.mark.parametrize("ids_as_numbers", [False, True])
@pytest.mark.parametrize("rule", PAIR_RULES)
def test_texts_chosen_for_jsons_escapes(rule, ids_as_numbers):
    instructions, responses = odd_tables(ids_as_numbers)
    pairs = preference_pairs(responses, rule=rule)
    expected = per_record_bytes(pairs, instructions, responses)
    assert len(pairs) >= len(ODD_TEXTS)  # a pair or more per instruction
    assert columnar_bytes(pairs, instructions, responses) == expected
    # Chunks join into the same lines wherever they are cut.
    for chunk_pairs in (1, 3, len(pairs) - 1):
        assert columnar_bytes(pairs, instructions, responses, chunk_pairs=chunk_pairs) == expected


@pytest.mark.parametrize("storage", ["arrow", "object"])
@pytest.mark.parametrize("chunk_texts", [1, 3, 7])
def test_texts_escaped_in_pieces_join_alike(monkeypatch, storage, chunk_texts):
    """Texts are escaped a few at a time into one buffer: wherever the pieces are cut, whatever holds the column
    (Arrow, sliced where it lies; Python objects, converted a piece at a time), the bytes are the same."""
    import admap.select

    monkeypatch.setattr(admap.select, "_ESCAPE_CHUNK_TEXTS", chunk_texts)
    instructions, responses = odd_tables()
    responses["response"] = responses["response"].astype("str" if storage == "arrow" else object)
    pairs = preference_pairs(responses)
    assert columnar_bytes(pairs, instructions, responses) == per_record_bytes(pairs, instructions, responses)


@pytest.mark.parametrize("storage", ["arrow", "object"])
def test_a_missing_text_is_refused(storage):
    """The per-record writer wrote it as ``NaN``, which JSON readers refuse; the loaders never leave one."""
    instructions, responses = odd_tables()
    responses["response"] = responses["response"].astype("str" if storage == "arrow" else object)
    responses.loc[1, "response"] = None
    pairs = preference_pairs(responses)
    fragments = trl_fragments(instructions, responses)
    with pytest.raises(ValueError, match="pairs name responses without text"):
        locate_pairs(pairs, fragments)
    # Pairs that do not name it are written as before.
    others = pairs[(pairs["chosen_id"] != 'odd-0-"1"\n') & (pairs["rejected_id"] != 'odd-0-"1"\n')]
    assert b"".join(trl_jsonl(locate_pairs(others, fragments), fragments)) == per_record_bytes(
        others, instructions, responses
    )


def test_subsets_with_no_pairs_write_nothing():
    instructions, responses = odd_tables()
    pairs = preference_pairs(responses)
    fragments = trl_fragments(instructions, responses)
    for ids in ([], ["not-an-instruction"]):
        assert b"".join(trl_jsonl(rows_of_instructions(locate_pairs(pairs, fragments), ids), fragments)) == b""
    assert columnar_bytes(pairs.iloc[:0], instructions, responses) == b""


def test_a_pair_naming_a_response_the_tables_lack_is_refused():
    instructions, responses = odd_tables()
    pairs = preference_pairs(responses)
    with pytest.raises(ValueError, match="pairs name responses that the tables do not hold"):
        locate_pairs(pairs, trl_fragments(instructions, responses.iloc[1:]))


def test_map_writes_the_previous_writers_bytes(tmp_path):
    """`admap map`'s five pair files, against the per-record writer given the run's own tables."""
    rows, proxies = build_rows()
    rows[3]["completions"][0]["response"] = ODD_TEXTS[5] + ODD_TEXTS[7]
    for row in rows:
        row["proxy"] = proxies[row["instruction"]]
    run = map_without_models(rows, tmp_path, scorer="annotation")
    responses, map_table = pd.read_parquet(run / "scores.parquet"), pd.read_parquet(run / "map.parquet")
    pairs = preference_pairs(responses)
    inputs = SelectionInputs(map_table, responses, pairs, "annotation")
    for name in MAP_STRATEGIES:
        subset = rows_of_instructions(pairs, map_subset_ids(inputs, name, seed=42))
        assert (run / "pairs" / f"{name}.jsonl").read_bytes() == per_record_bytes(subset, map_table, responses), name


def test_a_null_slot_holding_bytes_is_read_as_empty():
    """Arrow leaves a null slot's bytes undefined; another library's array may keep some there."""
    import pyarrow as pa

    from admap.select import _joined, _piece

    offsets = pa.py_buffer(np.array([0, 3, 6, 8], dtype=np.int64))
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little"))
    texts = pa.LargeStringArray.from_buffers(3, offsets, pa.py_buffer(b'abcdef"\n'), validity, 1)
    assert _joined([_piece(texts, escape=True)]).to_pylist() == ["abc", "", '\\"\\n']
