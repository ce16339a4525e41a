"""Bad input, both ways: by default an `InputError` naming file, row and field; with ``skip_invalid``
the row (or the one response) is listed in ``skipped`` and everything else is loaded.

Row numbers are 1-based physical lines for JSONL (blank lines count), lines for CSV (header = 1),
record indexes for JSON arrays and Parquet.
"""

import json
import math

import pytest
from accounting import assert_accounted

from admap.errors import InputError
from admap.load import LoadOptions, load_preferences


def load(source, **kwargs):
    kwargs.setdefault("progress", False)
    return load_preferences(str(source), **kwargs)


def write_lines(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def alpaca(i, **changes):
    record = {"instruction": f"Question {i}?", "input": "", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."}
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not DROP})


def trl(i, **changes):
    record = {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."}
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not DROP})


def hh(i, chosen_answer=None, rejected=None):
    prefix = f"\n\nHuman: Question {i}?\n\nAssistant:"
    chosen = prefix + " " + (chosen_answer if chosen_answer is not None else f"Good answer {i}.")
    return json.dumps({"chosen": chosen, "rejected": rejected if rejected is not None else prefix + f" Bad {i}."})


def completion(text, score, model="model-a"):
    return {
        "model": model,
        "response": text,
        "annotations": {"helpfulness": {"Rating": "3", "Rationale": "ok"}},
        "fine-grained_score": score,
    }


def ultrafeedback(i, completions=None):
    if completions is None:
        completions = [completion(f"Answer {i}.{k}", float(k + 1)) for k in range(4)]
    # json.dumps writes float("nan") as the bare NaN that Python's json (and the datasets' dumps) accept.
    return json.dumps({"source": "test", "instruction": f"Question {i}?", "completions": completions})


DROP = object()


def expect_error(path, row, field, reason, **kwargs):
    """Default mode: the first bad record stops the load, located in the message."""
    with pytest.raises(InputError) as info:
        load(path, **kwargs)
    error = info.value
    assert (error.file, error.row, error.field) == (str(path), row, field)
    message = str(error)
    # A CSV record is located by the line it starts on, and the message says "line".
    row_word = "line" if path.suffix == ".csv" else "row"
    assert message.startswith(f"{path}, {row_word} {row}, field '{field}': ")
    assert reason in message
    assert "--skip-invalid" in message
    return error


def expect_skipped(path, row, field, reason, unit="row", **kwargs):
    """skip_invalid: the bad record is listed once, with its row, field and reason; the counts add up."""
    data = load(path, skip_invalid=True, **kwargs)
    listed = [s for s in data.skipped if s.row == row]
    assert len(listed) == 1, data.skipped
    skipped = listed[0]
    assert (skipped.file, skipped.field, skipped.unit) == (str(path), field, unit)
    assert reason in skipped.reason
    assert_accounted(data)
    return data


def loaded_pair_rows(data):
    return list(data.preferences["source_row"])


# ---------------------------------------------------------------- broken records


def test_malformed_json_line(tmp_path):
    # Line 2 is blank (ignored, but counted as a line); line 3 is cut off.
    path = write_lines(tmp_path, [alpaca(1), "", '{"instruction": "Question 3?", "chosen": "Yes', alpaca(4)])
    expect_error(path, 3, "<line>", "malformed JSON")
    data = expect_skipped(path, 3, "<line>", "malformed JSON")
    assert data.counts()["rows_read"] == 3 and data.counts()["rows_skipped"] == 1
    assert loaded_pair_rows(data) == [1, 4]


def test_json_array_line(tmp_path):
    path = write_lines(tmp_path, [alpaca(1), '["Question 2?", "Good.", "Bad."]', alpaca(3)])
    expect_error(path, 2, "<line>", "expected a JSON object, got list")
    data = expect_skipped(path, 2, "<line>", "expected a JSON object, got list")
    assert loaded_pair_rows(data) == [1, 3]


def test_non_object_in_json_array_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[" + ", ".join([alpaca(1), '"just a string"', alpaca(3)]) + "]")
    expect_error(path, 2, "<record>", "expected an object, got str")
    data = expect_skipped(path, 2, "<record>", "expected an object, got str")
    assert loaded_pair_rows(data) == [1, 3]


def test_malformed_json_array_file_names_the_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[\n" + alpaca(1) + ",\n" + '{"instruction": oops}\n]')
    for skip_invalid in (False, True):
        with pytest.raises(InputError, match="malformed JSON") as info:
            load(path, skip_invalid=skip_invalid)
        assert (info.value.file, info.value.row) == (str(path), 3)


# ---------------------------------------------------------------- missing, empty and mistyped fields

CASES = {
    "alpaca missing rejected": ([alpaca(1), alpaca(2, rejected=DROP), alpaca(3)], 2, "rejected", "missing"),
    "trl missing rejected": ([trl(1), trl(2, rejected=DROP), trl(3)], 2, "rejected", "missing"),
    "trl missing prompt": (
        [trl(1), trl(2, prompt=DROP), trl(3)],
        2,
        "prompt",
        "missing, and 'chosen' carries no prompt turns",
    ),
    "alpaca missing instruction": ([alpaca(1), alpaca(2, instruction=DROP), alpaca(3)], 2, "instruction", "missing"),
    "alpaca whitespace instruction": ([alpaca(1), alpaca(2, instruction=" \n"), alpaca(3)], 2, "instruction", "empty"),
    "trl number chosen": ([trl(1), trl(2, chosen=42), trl(3)], 2, "chosen", "must be a string, got int"),
    "trl null rejected": ([trl(1), trl(2, rejected=None), trl(3)], 2, "rejected", "is null"),
    "alpaca list chosen": (
        [alpaca(1), alpaca(2, chosen=["Good.", "Better."]), alpaca(3)],
        2,
        "chosen",
        "must be a string, got list",
    ),
    "alpaca number input": ([alpaca(1), alpaca(2, input=7), alpaca(3)], 2, "input", "must be a string, got int"),
    "trl rating not a number": ([trl(1), trl(2, score_chosen="high"), trl(3)], 2, "score_chosen", "must be a number"),
    "conversational chosen ends with a user turn": (
        [
            trl(
                1,
                chosen=[{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A."}],
                rejected=[{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "B."}],
            ),
            trl(
                2,
                chosen=[{"role": "user", "content": "Q2?"}],
                rejected=[{"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "B."}],
            ),
            trl(
                3,
                chosen=[{"role": "user", "content": "Q3?"}, {"role": "assistant", "content": "A."}],
                rejected=[{"role": "user", "content": "Q3?"}, {"role": "assistant", "content": "B."}],
            ),
        ],
        2,
        "chosen[0].role",
        "last message must be 'assistant'",
    ),
    "hh rejected does not share the prefix": (
        [hh(1), hh(2, rejected="\n\nHuman: Another question?\n\nAssistant: Bad 2."), hh(3)],
        2,
        "rejected",
        "shares no '\\n\\nAssistant:' turn with 'chosen'",
    ),
    "trl infinite rating": ([trl(1), trl(2, score_rejected=math.inf), trl(3)], 2, "score_rejected", "finite"),
    "conversational null content": (
        [
            trl(
                i,
                prompt=[{"role": "user", "content": f"Q{i}?"}],
                chosen=[{"role": "assistant", "content": None if i == 2 else "A."}],
                rejected=[{"role": "assistant", "content": "B."}],
            )
            for i in (1, 2, 3)
        ],
        2,
        "chosen[0].content",
        "is null",
    ),
    "ultrafeedback completions not a list": (
        [ultrafeedback(1), json.dumps({"instruction": "Q?", "completions": {"response": "A."}}), ultrafeedback(3)],
        2,
        "completions",
        "must be a list, got dict",
    ),
    "ultrafeedback missing instruction": (
        [ultrafeedback(1), json.dumps({"completions": [completion("x", 1.0)], "models": []}), ultrafeedback(3)],
        2,
        "instruction",
        "missing",
    ),
}


@pytest.mark.parametrize("lines, row, field, reason", CASES.values(), ids=CASES.keys())
def test_bad_field_stops_or_skips_the_row(tmp_path, lines, row, field, reason):
    path = write_lines(tmp_path, lines)
    expect_error(path, row, field, reason)
    data = expect_skipped(path, row, field, reason, unit="row")
    assert data.counts()["rows_read"] == 3 and data.counts()["rows_skipped"] == 1
    others = [r for r in (1, 2, 3) if r != row]
    assert sorted(set(data.instructions["source_row"]) | set(data.preferences["source_row"])) == others
    # Nothing of the bad row reached the tables.
    assert row not in set(data.responses["source_row"])


# ---------------------------------------------------------------- UltraFeedback: one bad completion


@pytest.mark.parametrize(
    "rating, reason",
    [("excellent", "must be a number"), (math.inf, "finite"), (True, "must be a number"), ([4], "got list")],
    ids=["word", "inf", "bool", "list"],
)
def test_bad_fine_grained_score_skips_only_that_completion(tmp_path, rating, reason):
    completions = [completion(f"Answer 2.{k}", float(k + 1)) for k in range(4)]
    completions[2]["fine-grained_score"] = rating
    path = write_lines(tmp_path, [ultrafeedback(1), ultrafeedback(2, completions), ultrafeedback(3)])
    field = "completions[2].fine-grained_score"
    expect_error(path, 2, field, reason)
    data = expect_skipped(path, 2, field, reason, unit="response")
    c = data.counts()
    assert (c["rows_read"], c["rows_skipped"], c["responses_skipped"]) == (3, 0, 1)
    assert (c["responses_read"], c["responses"], c["instructions"]) == (12, 11, 3)
    row_two = data.responses[data.responses["source_row"] == 2]
    assert list(row_two["response"]) == ["Answer 2.0", "Answer 2.1", "Answer 2.3"]
    assert list(row_two["rating"]) == [1.0, 2.0, 4.0]


def test_string_fine_grained_score_is_a_number(tmp_path):
    # Ratings written as numeric strings are read as numbers (as UltraFeedback's aspect ratings are).
    completions = [completion(f"Answer 1.{k}", str(k + 1)) for k in range(4)]
    data = load(write_lines(tmp_path, [ultrafeedback(1, completions)]))
    assert list(data.responses["rating"]) == [1.0, 2.0, 3.0, 4.0]


def test_missing_response_in_a_completion_skips_only_that_completion(tmp_path):
    completions = [completion(f"Answer 1.{k}", float(k + 1)) for k in range(4)]
    del completions[1]["response"]
    completions[3]["response"] = 5
    path = write_lines(tmp_path, [ultrafeedback(1, completions), ultrafeedback(2)])
    expect_error(path, 1, "completions[1].response", "missing")
    data = load(path, skip_invalid=True)
    assert [(s.row, s.field, s.unit) for s in data.skipped] == [
        (1, "completions[1].response", "response"),
        (1, "completions[3].response", "response"),
    ]
    assert "must be a string, got int" in data.skipped[1].reason
    assert list(data.responses["response"][:2]) == ["Answer 1.0", "Answer 1.2"]
    assert_accounted(data)


def test_instruction_whose_completions_are_all_invalid_still_appears(tmp_path):
    completions = [completion(f"Answer 2.{k}", "excellent") for k in range(4)]
    path = write_lines(tmp_path, [ultrafeedback(1), ultrafeedback(2, completions), ultrafeedback(3)])
    expect_error(path, 2, "completions[0].fine-grained_score", "must be a number")
    data = load(path, skip_invalid=True)
    assert_accounted(data)
    assert list(data.instructions["instruction"]) == ["Question 1?", "Question 2?", "Question 3?"]
    assert list(data.instructions["source_row"]) == [1, 2, 3]
    assert [(s.row, s.field, s.unit) for s in data.skipped] == [
        (2, f"completions[{k}].fine-grained_score", "response") for k in range(4)
    ]
    lonely = data.instructions["instruction_id"].iloc[1]
    assert lonely not in set(data.responses["instruction_id"])
    c = data.counts()
    assert (c["rows_skipped"], c["responses_skipped"], c["responses"], c["instructions"]) == (0, 4, 8, 3)


# ---------------------------------------------------------------- duplicates and conflicts across rows


def test_exact_duplicate_pair_row_is_listed_not_loaded_and_not_an_error(tmp_path):
    path = write_lines(tmp_path, [alpaca(1), alpaca(2), alpaca(1), alpaca(3)])
    for skip_invalid in (False, True):
        data = load(path, skip_invalid=skip_invalid)
        assert loaded_pair_rows(data) == [1, 2, 4]
        assert [(s.row, s.field, s.unit) for s in data.skipped] == [(3, "chosen", "duplicate")]
        assert "duplicate of the pair in row 1" in data.skipped[0].reason
        c = data.counts()
        # The duplicate row's responses are not read into the tables at all.
        assert (c["rows_read"], c["rows_loaded"], c["rows_duplicate"], c["rows_skipped"]) == (4, 3, 1, 0)
        assert (c["responses_read"], c["responses"]) == (6, 6)


def test_reversed_pair_is_not_a_duplicate(tmp_path):
    reversed_pair = alpaca(1, chosen="Bad 1.", rejected="Good answer 1.")
    data = load(write_lines(tmp_path, [alpaca(1), reversed_pair]))
    assert loaded_pair_rows(data) == [1, 2] and data.counts()["responses_merged"] == 2


def test_prompt_id_naming_two_prompts(tmp_path):
    lines = [trl(1, prompt_id="p1"), trl(2, prompt_id="p1"), trl(3, prompt_id="p3")]
    path = write_lines(tmp_path, lines)
    expect_error(path, 2, "prompt_id", "names a different prompt in row 1")
    data = expect_skipped(path, 2, "prompt_id", "names a different prompt in row 1")
    assert list(data.instructions["instruction_id"]) == ["p1", "p3"]


# ---------------------------------------------------------------- CSV cells


def test_bad_rating_cell_in_csv(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("instruction,response,rating\nQ1?,A.,1\nQ1?,B.,inf\nQ1?,C.,3\n")
    options = LoadOptions(response_column="response", rating_column="rating")
    expect_error(path, 3, "rating", "finite", format="columns", options=options)
    data = expect_skipped(path, 3, "rating", "finite", format="columns", options=options)
    assert list(data.responses["response"]) == ["A.", "C."] and list(data.responses["rating"]) == [1.0, 3.0]


def test_missing_named_column(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("prompt,answer\nQ1?,A.\n")
    options = LoadOptions(response_column="answer")  # instruction_column defaults to 'instruction'
    expect_error(path, 2, "instruction", "missing", format="columns", options=options)


# ---------------------------------------------------------------- whole files


NO_FORMAT = {
    "classification rows": [{"text": "I loved it.", "label": 1}, {"text": "Dull.", "label": 0}],
    # Pairs with neither a prompt nor message lists nor HH transcripts: nothing tells where the prompt is.
    "implicit-prompt string pairs": [{"chosen": "Q? A good answer.", "rejected": "Q? A bad one."}],
    "transcripts without the leading blank line": [
        {"chosen": "Human: Hi\n\nAssistant: Hello.", "rejected": "Human: Hi"}
    ],
}


@pytest.mark.parametrize("records", NO_FORMAT.values(), ids=NO_FORMAT.keys())
def test_file_matching_no_known_format(tmp_path, records):
    path = write_lines(tmp_path, [json.dumps(r) for r in records])
    for skip_invalid in (False, True):  # no format, nothing to skip to
        with pytest.raises(InputError) as info:
            load(path, skip_invalid=skip_invalid)
        error = info.value
        assert (error.file, error.row, error.field) == (str(path), 1, None)
        message = str(error)
        assert "matches no known format" in message
        assert str(sorted(records[0])) in message
        assert "--format columns" in message and "--instruction-column" in message
        for name in ("ultrafeedback", "alpaca", "hh_rlhf", "preference"):
            assert name in message


def test_format_detected_after_a_malformed_first_line(tmp_path):
    path = write_lines(tmp_path, ["{not json", alpaca(2), alpaca(3)])
    data = expect_skipped(path, 1, "<line>", "malformed JSON")
    assert data.format == "alpaca" and loaded_pair_rows(data) == [2, 3]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.jsonl", b"", "holds no records"),
        ("blank.jsonl", b"\n  \n\n", "holds no records"),
        ("empty.jsonl.gz", None, "holds no records"),
        ("empty_list.json", b"[]", "holds no records"),
        ("empty.json", b"", "malformed JSON"),
        ("empty.csv", b"", "holds no records"),
        ("header_only.csv", b"prompt,chosen,rejected\n", "holds no records"),
        ("empty.parquet", b"", "not a readable Parquet file"),
    ],
)
def test_empty_file(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        import gzip

        with gzip.open(path, "wb"):
            pass
    else:
        path.write_bytes(content)
    for skip_invalid in (False, True):
        with pytest.raises(InputError, match=reason) as info:
            load(path, skip_invalid=skip_invalid)
        assert info.value.file == str(path)
        assert str(info.value).startswith(str(path))


def test_json_file_that_is_not_a_list(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(alpaca(1))
    with pytest.raises(InputError, match="must hold a list of records") as info:
        load(path)
    assert info.value.file == str(path)


@pytest.mark.parametrize("name", ["data.txt", "data.tsv", "data.jsonl.zip", "data"])
def test_unknown_file_suffix(tmp_path, name):
    path = write_lines(tmp_path, [alpaca(1)], name=name)
    for skip_invalid in (False, True):
        with pytest.raises(InputError, match="unknown file type") as info:
            load(path, skip_invalid=skip_invalid)
        assert info.value.file == str(path)
        assert ".jsonl, .json, .parquet, .csv" in str(info.value)


@pytest.mark.parametrize(
    "name", ["missing.jsonl", "missing.json", "missing.parquet", "missing.csv", "missing.jsonl.gz"]
)
def test_missing_file_with_a_local_suffix(tmp_path, monkeypatch, name):
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a missing local file must not be looked up on the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    path = tmp_path / "sub" / name
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.file == str(path) and info.value.row is None
    assert str(info.value) == f"{path}: file not found"


def test_malformed_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('instruction,chosen,rejected\n"Q1?,A.,B.\n')  # the quote is never closed
    for skip_invalid in (False, True):
        with pytest.raises(InputError, match="malformed CSV") as info:
            load(path, skip_invalid=skip_invalid)
        assert info.value.file == str(path)


def test_first_record_of_no_known_shape_is_one_skipped_row_with_skip_invalid(tmp_path):
    path = write_lines(tmp_path, [json.dumps({"question": "?"}), alpaca(1), alpaca(2)])
    with pytest.raises(InputError, match="matches no known format"):
        load(path)
    data = load(path, skip_invalid=True)
    assert data.format == "alpaca" and loaded_pair_rows(data) == [2, 3]
    assert [(s.row, s.unit) for s in data.skipped] == [(1, "row")]
    assert_accounted(data)


def test_conflicting_ratings_of_a_repeated_response_are_counted_and_the_last_wins(tmp_path):
    lines = [
        trl(1, score_chosen=8.0, score_rejected=3.0),
        trl(1, chosen="Another answer.", rejected="Bad 1.", score_chosen=9.0, score_rejected=5.0),
    ]
    data = load(write_lines(tmp_path, lines))
    assert data.counts()["rating_conflicts"] == 1
    # As in the authors' code, where a dict keyed by response text keeps the last rating written.
    assert data.responses.set_index("response")["rating"]["Bad 1."] == 5.0


def test_undecodable_and_bom_files(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(alpaca(1).encode() + b"\n" + '{"instruction": "caf\u00e9"}'.encode("latin-1") + b"\n")
    expect_error(latin, 2, "<line>", "not UTF-8 text")
    expect_skipped(latin, 2, "<line>", "not UTF-8 text")
    not_gzip = tmp_path / "data.jsonl.gz"
    not_gzip.write_text(alpaca(1))
    with pytest.raises(InputError, match="BadGzipFile"):
        load(not_gzip)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + alpaca(1).encode() + b"\n")
    assert loaded_pair_rows(load(bom)) == [1]
