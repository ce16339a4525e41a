"""The loader's bookkeeping invariant, shared by the loader tests: nothing read is lost."""

# Listed entries whose row is loaded all the same: a pair of two identical texts is one response.
LOADED_UNITS = ("response", "identical_pair")


def assert_accounted(data):
    """Every row read is loaded, skipped, a listed duplicate or filtered out; every response read is kept,
    merged or skipped."""
    c = data.counts()
    assert c["rows_read"] == c["rows_loaded"] + c["rows_skipped"] + c["rows_duplicate"] + c["rows_filtered"]
    assert c["responses_read"] == c["responses"] + c["responses_merged"] + c["responses_skipped"]
    skipped_rows = [s.row for s in data.skipped if s.unit in ("row", "duplicate")]
    assert len(skipped_rows) == len(set(skipped_rows)) == c["rows_skipped"] + c["rows_duplicate"]
    present = (
        set(data.instructions["source_row"])
        | set(data.responses["source_row"])
        | set(data.preferences["source_row"])
        | {s.row for s in data.skipped if s.unit in LOADED_UNITS}
    )
    assert not present & set(skipped_rows)
    assert len(present) == c["rows_loaded"]
    assert c["identical_pairs"] == sum(s.unit == "identical_pair" for s in data.skipped)
    for skipped in data.skipped:
        assert skipped.row >= 1 and skipped.reason and skipped.field
        assert skipped.unit in ("row", "response", "duplicate", "identical_pair")
    # Every preference points at responses of its own instruction.
    owner = dict(zip(data.responses["response_id"], data.responses["instruction_id"]))
    for pref in data.preferences.itertuples():
        assert owner[pref.chosen_id] == pref.instruction_id == owner[pref.rejected_id]
    # A response marked as repeating a text names an earlier response of its instruction with that text.
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    for response in data.responses[data.responses["same_text_as"].notna()].itertuples():
        assert owner[response.same_text_as] == response.instruction_id
        assert text[response.same_text_as] == response.response
