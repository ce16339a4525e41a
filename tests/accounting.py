"""The loader's bookkeeping invariant, shared by the loader tests: nothing read is lost."""


def assert_accounted(data):
    """Every row read is loaded, skipped or a listed duplicate; every response read is kept, merged or skipped."""
    c = data.counts()
    assert c["rows_read"] == c["rows_loaded"] + c["rows_skipped"] + c["rows_duplicate"]
    assert c["responses_read"] == c["responses"] + c["responses_merged"] + c["responses_skipped"]
    skipped_rows = [s.row for s in data.skipped if s.unit in ("row", "duplicate")]
    assert len(skipped_rows) == len(set(skipped_rows)) == c["rows_skipped"] + c["rows_duplicate"]
    present = (
        set(data.instructions["source_row"])
        | set(data.responses["source_row"])
        | set(data.preferences["source_row"])
        | {s.row for s in data.skipped if s.unit == "response"}
    )
    assert not present & set(skipped_rows)
    assert len(present) == c["rows_loaded"]
    for skipped in data.skipped:
        assert skipped.row >= 1 and skipped.reason and skipped.field
        assert skipped.unit in ("row", "response", "duplicate")
    # Every preference points at responses of its own instruction.
    owner = dict(zip(data.responses["response_id"], data.responses["instruction_id"]))
    for pref in data.preferences.itertuples():
        assert owner[pref.chosen_id] == pref.instruction_id == owner[pref.rejected_id]
