"""The loader holds the response texts in Arrow, not as a Python string each: the canonical tables'
text columns are Arrow-backed, and the Python memory a load allocates (tracemalloc, which does not
see Arrow's allocator) stays far below the texts' size, at its peak and once loaded. What reads the
Arrow texts afterwards without a Python string per text (the blank count, the viewer's lengths and
cuts) gives what the Python strings gave."""

import json
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa

import admap.load.builder as builder
from admap.load import load_preferences
from admap.load.schema import blank_texts
from admap.view import shorten, shortened, strings, text_lengths

ROWS, COMPLETIONS, TEXT_CHARS = 400, 4, 2_000


def write_rows(path) -> int:
    """Raw-UltraFeedback rows with long, distinct completions; returns the bytes of their texts."""
    text_bytes = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in range(ROWS):
            completions = []
            for k in range(COMPLETIONS):
                text = f"{row}.{k} " + "word " * (TEXT_CHARS // 5)
                text_bytes += len(text)
                ratings = {
                    a: {"Rating": str(1 + (row + k) % 5), "Rationale": "why"} for a in ("helpfulness", "honesty")
                }
                completions.append(
                    {"model": f"m{k}", "principle": "helpfulness", "response": text, "annotations": ratings}
                )
            handle.write(
                json.dumps({"source": "s", "instruction": f"Question {row}?", "completions": completions}) + "\n"
            )
    return text_bytes


def test_text_columns_are_arrow_backed(tmp_path):
    path = tmp_path / "ultrafeedback.jsonl"
    write_rows(path)
    data = load_preferences(str(path), progress=False)
    for table, column in ((data.responses, "response"), (data.instructions, "instruction")):
        dtype = table[column].dtype
        assert isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow", (column, dtype)
    assert data.responses["response"].array._pa_array.type == pa.large_string()
    assert len(data.responses) == ROWS * COMPLETIONS
    assert data.responses["response"].iloc[5] == "1.1 " + "word " * (TEXT_CHARS // 5)


def test_python_memory_of_a_load_is_far_below_the_texts(tmp_path, monkeypatch):
    path = tmp_path / "ultrafeedback.jsonl"
    text_bytes = write_rows(path)
    # Small chunks, so that this small file spans many (the default holds 8,192 texts before a chunk).
    monkeypatch.setattr(builder, "TEXT_CHUNK", 64)
    tracemalloc.start()
    try:
        data = load_preferences(str(path), progress=False)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data.responses) == ROWS * COMPLETIONS
    # Python strings per text would make both at least the texts' size (the old loader peaked near 3x); what
    # it holds instead is a few numbers per response and the per-instruction records.
    assert peak < 0.5 * text_bytes, (peak, text_bytes)
    assert held < 0.1 * text_bytes, (held, text_bytes)


TEXTS = ["héllo wörld 😀😀 abc", "", None, "short", " \t\n", "\u2003\u00a0", "ab😀cdefghij\u0301xyz", "x" * 30]


def test_blank_texts_are_those_strip_empties():
    for values in (pd.Series(TEXTS, dtype=object), pd.Series(TEXTS, dtype="str")):
        expected = int((pd.Series(TEXTS, dtype=object).str.strip() == "").sum())
        assert blank_texts(values) == expected == 3


def test_the_viewer_measures_and_cuts_arrow_texts_as_python_strings():
    arrow, python = pd.Series(TEXTS, dtype="str"), pd.Series(TEXTS, dtype=object)
    assert text_lengths(arrow).tolist() == text_lengths(python).tolist() == [len(t or "") for t in TEXTS]
    for limit in (None, 0, 3, 7, 12):
        assert shortened(arrow, limit) == shortened(python, limit) == [shorten(t, limit) for t in strings(python)]
    # Kept whole where asked, cut elsewhere, the same in both.
    whole = np.arange(len(TEXTS)) % 2 == 0
    expected = [t if keep else shorten(t, 3) for t, keep in zip(strings(python), whole)]
    assert shortened(arrow, 3, whole) == shortened(python, 3, whole) == expected
