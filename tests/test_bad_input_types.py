"""Values of the wrong type, nested nulls and text that is not text, in every format, through `admap map`.

Each case puts one bad value in one row of an otherwise good file. Without ``--skip-invalid`` the run
stops with a message naming the file, the row (the line a record starts on, for CSV) and the field;
with it the run completes, the row (or the one response) is counted and listed in summary.json, and
every other row is mapped. JSON's ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 writer
accepts: it is an invalid value where it is read, not a crash where the tables are written.
"""

import json
import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from admap.cli import main

ROWS = 6
BAD_ROW = 4  # 1-based: the JSONL line, or the JSON / Parquet record, that holds the bad value
SURROGATE = "\ud800"


def ultrafeedback(i):
    completions = [
        {
            "model": f"model-{k}",
            "principle": "helpfulness",
            "response": f"Answer {i}.{k} with some words",
            "annotations": {"helpfulness": {"Rating": str(k + 2), "Rationale": "ok"}},
            "fine-grained_score": float(k + 1),
        }
        for k in range(4)
    ]
    return {"source": "test", "instruction": f"Question {i}?", "completions": completions, "proxy": f"Answer {i}"}


def binarized(i):
    def turns(answer):
        return [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": answer}]

    return {
        "prompt": f"Question {i}?",
        "prompt_id": f"p{i}",
        "chosen": turns(f"Good answer {i}."),
        "rejected": turns(f"Bad answer {i}."),
        "score_chosen": 8.0,
        "score_rejected": 3.0,
        "proxy": f"Answer {i}",
    }


def trl(i):
    return {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}.", "proxy": "A"}


def hh_rlhf(i):
    dialogue = f"\n\nHuman: Question {i}?\n\nAssistant:"
    return {"chosen": f"{dialogue} Good answer {i}.", "rejected": f"{dialogue} Bad answer {i}.", "proxy": "A"}


def alpaca(i):
    return {"instruction": f"Question {i}?", "input": "", "chosen": f"Good {i}.", "rejected": f"Bad {i}.", "proxy": "A"}


def long_table(i):
    """One response per row, three rows per instruction (so that one left out leaves two to map)."""
    group = (i - 1) // 3
    return {
        "id": group,
        "instruction": f"Question {group}?",
        "response": f"Answer {i}.",
        "rating": i % 3,
        "model": "m",
        "proxy": "Answer",
    }


LONG_TABLE_FLAGS = [
    "--format",
    "columns",
    "--id-column",
    "id",
    "--response-column",
    "response",
    "--rating-column",
    "rating",
    "--model-column",
    "model",
]


def _set(path, value):
    """A change to one record: ``path`` is a list of keys and indexes into it."""

    def change(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _append_surrogate(path):
    def change(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] += SURROGATE

    return change


# name: (record maker, change to the bad row, field named, reason, unit, extra flags)
CASES = {
    "ultrafeedback completions a string": (
        ultrafeedback,
        _set(["completions"], "abcdefghijklmnopqrstuvwxyz0123"),
        "completions",
        "must be a list, got str",
        "row",
        [],
    ),
    "ultrafeedback completions null": (
        ultrafeedback,
        _set(["completions"], None),
        "completions",
        "must be a list, got NoneType",
        "row",
        [],
    ),
    "ultrafeedback completion a string": (
        ultrafeedback,
        _set(["completions", 1], "Answer as a bare string"),
        "completions[1]",
        "must be an object, got str",
        "response",
        [],
    ),
    "ultrafeedback completion null": (
        ultrafeedback,
        _set(["completions", 2], None),
        "completions[2]",
        "must be an object, got NoneType",
        "response",
        [],
    ),
    "ultrafeedback response a list": (
        ultrafeedback,
        _set(["completions", 0, "response"], ["Answer", "in parts"]),
        "completions[0].response",
        "must be a string, got list",
        "response",
        [],
    ),
    "ultrafeedback model a list": (
        ultrafeedback,
        _set(["completions", 0, "model"], ["model-a", "model-b"]),
        "completions[0].model",
        "must be a string, got list",
        "response",
        [],
    ),
    "ultrafeedback principle an object": (
        ultrafeedback,
        _set(["completions", 3, "principle"], {"name": "helpfulness"}),
        "completions[3].principle",
        "must be a string, got dict",
        "response",
        [],
    ),
    "ultrafeedback score an object": (
        ultrafeedback,
        _set(["completions", 2, "fine-grained_score"], {"value": 3}),
        "completions[2].fine-grained_score",
        "rating must be a number, got dict",
        "response",
        [],
    ),
    "ultrafeedback annotations a list, rated by an aspect": (
        ultrafeedback,
        _set(["completions", 0, "annotations"], [{"Rating": "5"}]),
        "completions[0].annotations",
        "must be an object, got list",
        "response",
        ["--rating-field", "helpfulness"],
    ),
    "ultrafeedback aspect rating an object": (
        ultrafeedback,
        _set(["completions", 1, "annotations", "helpfulness", "Rating"], {"value": 5}),
        "completions[1].annotations.helpfulness.Rating",
        "rating must be a number, got dict",
        "response",
        ["--rating-field", "helpfulness"],
    ),
    "ultrafeedback source a list": (
        ultrafeedback,
        _set(["source"], ["a", "b"]),
        "source",
        "must be a string, got list",
        "row",
        [],
    ),
    "ultrafeedback lone surrogate in the instruction": (
        ultrafeedback,
        _append_surrogate(["instruction"]),
        "instruction",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "ultrafeedback lone surrogate in a response": (
        ultrafeedback,
        _append_surrogate(["completions", 3, "response"]),
        "completions[3].response",
        "lone surrogate '\\ud800'",
        "response",
        [],
    ),
    "ultrafeedback lone surrogate in the proxy": (
        ultrafeedback,
        _append_surrogate(["proxy"]),
        "proxy",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "binarized chosen a string": (
        binarized,
        _set(["chosen"], "Good answer as a string."),
        "chosen",
        "must be a list of messages as 'rejected' is, got str",
        "row",
        [],
    ),
    "binarized rejected an object": (
        binarized,
        _set(["rejected"], {"role": "assistant", "content": "Bad."}),
        "rejected",
        "must be a list of messages as 'chosen' is, got dict",
        "row",
        [],
    ),
    "binarized null message": (
        binarized,
        _set(["rejected", 1], None),
        "rejected[1]",
        "must be an object with 'role' and 'content'",
        "row",
        [],
    ),
    "binarized content a list": (
        binarized,
        _set(["chosen", 1, "content"], ["Good", "answer"]),
        "chosen[1].content",
        "must be a string, got list",
        "row",
        [],
    ),
    "binarized role an object": (
        binarized,
        _set(["chosen", 0, "role"], {"name": "user"}),
        "chosen[0].role",
        "must be a string, got dict",
        "row",
        [],
    ),
    "binarized score an object": (
        binarized,
        _set(["score_chosen"], {"value": 8}),
        "score_chosen",
        "rating must be a number, got dict",
        "row",
        [],
    ),
    "binarized prompt_id a list": (
        binarized,
        _set(["prompt_id"], ["p", 4]),
        "prompt_id",
        "must be a string or a number, got list",
        "row",
        [],
    ),
    "binarized prompt an object": (
        binarized,
        _set(["prompt"], {"text": "Question?"}),
        "prompt",
        "must be a string, got dict",
        "row",
        [],
    ),
    "binarized lone surrogate in a message": (
        binarized,
        _append_surrogate(["chosen", 1, "content"]),
        "chosen[1].content",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "binarized lone surrogate in prompt_id": (
        binarized,
        _append_surrogate(["prompt_id"]),
        "prompt_id",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "trl rejected an object": (
        trl,
        _set(["rejected"], {"text": "Bad."}),
        "rejected",
        "must be a string, got dict",
        "row",
        [],
    ),
    "trl prompt a list of strings": (
        trl,
        _set(["prompt"], ["Question?"]),
        "prompt[0]",
        "must be an object with 'role' and 'content'",
        "row",
        [],
    ),
    "trl lone surrogate in the prompt": (
        trl,
        _append_surrogate(["prompt"]),
        "prompt",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "hh-rlhf chosen a list": (
        hh_rlhf,
        _set(["chosen"], ["\n\nHuman: Question?\n\nAssistant: Good."]),
        "chosen",
        "must be a string, got list",
        "row",
        [],
    ),
    "hh-rlhf rejected null": (hh_rlhf, _set(["rejected"], None), "rejected", "is null", "row", []),
    "hh-rlhf lone surrogate in a transcript": (
        hh_rlhf,
        _append_surrogate(["rejected"]),
        "rejected",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "alpaca input a list": (alpaca, _set(["input"], ["more"]), "input", "must be a string, got list", "row", []),
    "alpaca chosen an object": (alpaca, _set(["chosen"], {"text": "Good."}), "chosen", "got dict", "row", []),
    "alpaca lone surrogate in the input": (
        alpaca,
        _append_surrogate(["input"]),
        "input",
        "lone surrogate '\\ud800'",
        "row",
        [],
    ),
    "long table response a list": (
        long_table,
        _set(["response"], ["Answer", "in parts"]),
        "response",
        "must be a string, got list",
        "row",
        LONG_TABLE_FLAGS,
    ),
    "long table rating an object": (
        long_table,
        _set(["rating"], {"value": 2}),
        "rating",
        "rating must be a number, got dict",
        "row",
        LONG_TABLE_FLAGS,
    ),
    "long table model an object": (
        long_table,
        _set(["model"], {"name": "m"}),
        "model",
        "must be a string, got dict",
        "row",
        LONG_TABLE_FLAGS,
    ),
    "long table id a list": (
        long_table,
        _set(["id"], [1]),
        "id",
        "must be a string or a number, got list",
        "row",
        LONG_TABLE_FLAGS,
    ),
    "long table lone surrogate in a response": (
        long_table,
        _append_surrogate(["response"]),
        "response",
        "lone surrogate '\\ud800'",
        "row",
        LONG_TABLE_FLAGS,
    ),
}


def records_with_one_bad(make, change):
    records = [make(i) for i in range(1, ROWS + 1)]
    change(records[BAD_ROW - 1])
    return records


def write_jsonl(path, records):
    # json.dumps escapes a lone surrogate as \ud800, which json.loads turns back into one.
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_json(path, records):
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def map_file(path, run, *flags):
    """`admap map` with a model-free scorer: ROUGE-L against the file's proxy column."""
    argv = ["map", str(path), "--scorer", "rouge_l", "--proxy-column", "proxy", "--generator", "none"]
    argv += ["--out", str(run), "--quiet", "--no-plot", *flags]
    return main(argv)


def expect_stop(path, tmp_path, caplog, location, field, reason, *flags):
    """Without --skip-invalid: a non-zero exit, and one error naming file, row or line, and field."""
    caplog.clear()
    assert map_file(path, tmp_path / "stopped", *flags) != 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}, {location}, field '{field}': "), errors[0]
    assert reason in errors[0] and "--skip-invalid" in errors[0]
    assert not (tmp_path / "stopped" / "summary.json").exists()


def expect_skipped(path, tmp_path, row, field, reason, unit, *flags):
    """With --skip-invalid: the run completes, the bad row or response is counted and listed under its
    reason, and every other row is mapped."""
    run = tmp_path / "skipped"
    assert map_file(path, run, "--skip-invalid", *flags) == 0
    summary = json.loads((run / "summary.json").read_text())
    dataset = summary["dataset"]
    assert (dataset["rows_skipped"], dataset["responses_skipped"]) == ((1, 0) if unit == "row" else (0, 1))
    assert dataset["rows_read"] == dataset["rows_loaded"] + dataset["rows_skipped"]
    kept_responses = dataset["responses"] + dataset["responses_merged"]
    assert dataset["responses_read"] == kept_responses + dataset["responses_skipped"]
    (listed,) = summary["skipped"]
    assert (listed["file"], listed["row"], listed["field"], listed["unit"]) == (str(path), row, field, unit)
    assert reason in listed["reason"]
    scores = pd.read_parquet(run / "scores.parquet")
    kept_rows = set(range(1, ROWS + 1)) - ({row} if unit == "row" else set())
    assert set(scores["source_row"]) == kept_rows
    assert pd.read_parquet(run / "map.parquet")["is_mapped"].all()


@pytest.mark.parametrize("make, change, field, reason, unit, flags", CASES.values(), ids=CASES.keys())
def test_bad_value_in_jsonl(tmp_path, caplog, make, change, field, reason, unit, flags):
    path = write_jsonl(tmp_path / "data.jsonl", records_with_one_bad(make, change))
    expect_stop(path, tmp_path, caplog, f"row {BAD_ROW}", field, reason, *flags)
    expect_skipped(path, tmp_path, BAD_ROW, field, reason, unit, *flags)


# The same reader rules for a JSON array file: rows are record indexes.
JSON_ARRAY_CASES = {
    name: CASES[name]
    for name in (
        "ultrafeedback completions a string",
        "binarized chosen a string",
        "hh-rlhf lone surrogate in a transcript",
    )
}


@pytest.mark.parametrize("make, change, field, reason, unit, flags", JSON_ARRAY_CASES.values(), ids=JSON_ARRAY_CASES)
def test_bad_value_in_json_array(tmp_path, caplog, make, change, field, reason, unit, flags):
    path = write_json(tmp_path / "data.json", records_with_one_bad(make, change))
    expect_stop(path, tmp_path, caplog, f"row {BAD_ROW}", field, reason, *flags)
    expect_skipped(path, tmp_path, BAD_ROW, field, reason, unit, *flags)


# Parquet columns hold one type each, so what goes wrong there is a null where a value belongs.
PARQUET_CASES = {
    "ultrafeedback null response": (
        ultrafeedback,
        _set(["completions", 1, "response"], None),
        "completions[1].response",
        "is null",
        "response",
    ),
    "ultrafeedback null completions": (ultrafeedback, _set(["completions"], None), "completions", "NoneType", "row"),
    "binarized null message content": (
        binarized,
        _set(["rejected", 1, "content"], None),
        "rejected[1].content",
        "is null",
        "row",
    ),
    "trl null chosen": (trl, _set(["chosen"], None), "chosen", "is null", "row"),
}


@pytest.mark.parametrize("make, change, field, reason, unit", PARQUET_CASES.values(), ids=PARQUET_CASES)
def test_null_in_parquet(tmp_path, caplog, make, change, field, reason, unit):
    path = write_parquet(tmp_path / "data.parquet", records_with_one_bad(make, change))
    expect_stop(path, tmp_path, caplog, f"row {BAD_ROW}", field, reason)
    expect_skipped(path, tmp_path, BAD_ROW, field, reason, unit)


# ---------------------------------------------------------------- CSV: records that span lines

CSV_FLAGS = ["--format", "columns", "--chosen-column", "chosen", "--rejected-column", "rejected"]


def csv_with_multiline_records(bad_record, position=BAD_ROW):
    """Pairs whose instructions span several lines (quoted line breaks), record ``position`` replaced by
    ``bad_record``."""
    records = ["instruction,chosen,rejected,proxy"]
    for i in range(1, ROWS + 1):
        records.append(f'"Question {i}\nwith a second line\nand a third?",Good {i}.,Bad {i}.,Good {i}.')
    records[position] = bad_record
    return "\n".join(records) + "\n"


def start_line(text, record_start):
    """The 1-based line of ``text`` that begins with ``record_start``, as a reader of the file counts it."""
    (line,) = [n for n, line in enumerate(text.split("\n"), start=1) if line.startswith(record_start)]
    return line


@pytest.mark.parametrize(
    "bad_record, field, reason",
    [
        ('"  ",Good.,Bad.,Good.', "instruction", "is empty"),
        ('"Question?\nover two lines",Good.,Bad.', "<line>", "has 3 fields where the header has 4"),
        ('"Question?"?,Good.,Bad.,Good.', "<line>", "malformed CSV (',' expected after '\"')"),
    ],
    ids=["empty instruction", "missing field", "text after a closing quote"],
)
def test_csv_error_names_the_line_a_record_starts_on(tmp_path, caplog, bad_record, field, reason):
    text = csv_with_multiline_records(bad_record)
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    line = start_line(text, bad_record.split("\n")[0])
    assert line != BAD_ROW + 1  # the record number and the line differ, so the test tells them apart
    expect_stop(path, tmp_path, caplog, f"line {line}", field, reason, *CSV_FLAGS)
    run = tmp_path / "skipped"
    assert map_file(path, run, "--skip-invalid", *CSV_FLAGS) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["rows_skipped"] == 1 and summary["dataset"]["rows_loaded"] == ROWS - 1
    assert [(s["row"], s["field"], s["unit"]) for s in summary["skipped"]] == [(line, field, "row")]
    good_lines = {start_line(text, f'"Question {i}\n'.split("\n")[0]) for i in range(1, ROWS + 1) if i != BAD_ROW}
    assert set(pd.read_parquet(run / "scores.parquet")["source_row"]) == good_lines


def test_unclosed_quote_in_csv_names_its_line(tmp_path, caplog):
    # The last record's quote is never closed: it runs to the end of the file.
    text = csv_with_multiline_records('"Question?,Good.,Bad.,Good.', position=ROWS)
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    line = start_line(text, '"Question?,')
    for skip in ([], ["--skip-invalid"]):
        caplog.clear()
        assert map_file(path, tmp_path / "run", *skip, *CSV_FLAGS) != 0
        (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert error.startswith(f"{path}, line {line}: malformed CSV")


# ---------------------------------------------------------------- every row skipped


@pytest.mark.parametrize(
    "records, flags, counted, first_reason",
    [
        (
            [{**alpaca(i), "instruction": " "} for i in range(1, ROWS + 1)],
            [],
            f"of {ROWS} rows read, {ROWS} skipped as invalid",
            "row 1, field 'instruction': is empty",
        ),
        (
            [
                {**record, "completions": [{**c, "fine-grained_score": "excellent"} for c in record["completions"]]}
                for record in map(ultrafeedback, range(1, ROWS + 1))
            ],
            [],
            f"of {ROWS} rows read, {4 * ROWS} of their {4 * ROWS} responses skipped",
            "row 1, field 'completions[0].fine-grained_score': rating must be a number, got 'excellent'",
        ),
    ],
    ids=["every row", "every response"],
)
def test_no_usable_row_says_how_many_were_skipped_and_why(tmp_path, caplog, records, flags, counted, first_reason):
    path = write_jsonl(tmp_path / "data.jsonl", records)
    caplog.clear()
    assert map_file(path, tmp_path / "run", "--skip-invalid", *flags) != 0
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error.startswith(f"{path}: no row was usable: {counted} ({first_reason}; ")
    assert error.endswith(" more)")
    assert "needs ratings" not in error
    assert not (tmp_path / "run" / "summary.json").exists()


def test_every_row_filtered_out_is_said(tmp_path, caplog):
    records = [ultrafeedback(i) for i in range(1, ROWS + 1)]
    path = write_jsonl(tmp_path / "data.jsonl", records)
    assert map_file(path, tmp_path / "run", "--principle", "honesty") != 0
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert error == (
        f"{path}: no row was usable: of {ROWS} rows read, {ROWS} left out by the row filter "
        "(rows with exactly 4 completions whose principle is 'honesty')"
    )
