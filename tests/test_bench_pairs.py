"""benchmarks/bench_pairs.py, small: both writers write the five files alike, and the results carry the goal."""

import csv
import json

from benchmarks.bench_pairs import GOAL_ROWS, goal_row, main


def test_bench_pairs_small(tmp_path, capsys):
    assert main(["--rows", "60", "--repeats", "1", "--out-dir", str(tmp_path)]) == 0
    (result,) = json.loads((tmp_path / "bench_pairs.json").read_text())["results"]
    assert result["identical_bytes"] and result["pairs"] > 60  # files compared byte for byte in the run
    assert set(result["per_record_parts_s"]) == {"subset rows", "trl_records", "json.dumps", "write"}
    assert set(result["high_mean_load_s"]) >= {"json", "parquet"}
    (row,) = csv.DictReader((tmp_path / "bench_pairs.csv").open())
    assert set(row) == {"goal", "target", "measured", "peer", "met", "command"}
    assert row["target"] == "faster than the per-record peer" and "--rows 60" in row["command"]
    assert "60 rows" in capsys.readouterr().out
    assert "| 60 |" in (tmp_path / "bench_pairs.md").read_text()


def test_the_goal_is_ten_seconds_at_64k_rows():
    result = {"rows": GOAL_ROWS, "pairs": 1, "admap_s": 9.9, "per_record_s": 60.0}
    assert goal_row(result, "c") == {
        "goal": "the five pairs files of a 64,000-row UltraFeedback run (1 pairs)",
        "target": "<= 10 s",
        "measured": "9.90 s",
        "peer": "per-record writer (a dict and a json.dumps per pair) 60.00 s",
        "met": True,
        "command": "c",
    }
    assert not goal_row({**result, "admap_s": 10.1}, "c")["met"]
