"""Input errors and the record of skipped rows.

Every input row either reaches the output tables or becomes a `SkippedRow`; a run
without ``skip_invalid`` stops at the first bad row with an `InputError` instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SkippedRow:
    """One input row (or one response inside a row) left out, and why."""

    file: str
    row: int
    field: str
    reason: str
    # "row": the whole input record is left out; "response": one response inside it;
    # "duplicate": the record repeats an earlier one exactly (listed, never an error).
    unit: str = "row"

    def to_dict(self) -> dict:
        return asdict(self)


class InputError(ValueError):
    """Bad input, located by file, row (1-based line or record number) and field.

    ``row_name`` is what the message calls the row number: "row", or "line" where it is the line a
    record starts on and not the record's index (CSV, whose records can span lines).
    """

    def __init__(self, file: str, row: int | None, field: str | None, reason: str, *, row_name: str = "row"):
        self.file, self.row, self.field, self.reason = file, row, field, reason
        where = file if row is None else f"{file}, {row_name} {row}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {reason}")

    def as_skipped(self, unit: str = "row") -> SkippedRow:
        return SkippedRow(self.file, self.row or 0, self.field or "<record>", self.reason, unit)


class RowError(ValueError):
    """A problem in one record, raised by a format parser before the file and row are known."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}")
