"""benchmarks/bench_load.py, small: both loaders read the whole file, and admap finds what it planted."""

import json

from benchmarks.bench_load import main


def test_bench_load_small(tmp_path, capsys):
    out = tmp_path / "bench_load.json"
    assert main(["--rows", "1500", "--repeats", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    data, (admap,), (peer,) = record["data"], record["runs"]["admap"], record["runs"]["datasets"]
    assert data["repeated_rows"] > 0 and peer["rows"] == data["rows"] == 1500
    # Every planted repeat is counted once, every empty completion is kept.
    assert admap["rows_duplicate"] == data["repeated_rows"]
    assert admap["instructions"] == data["rows"] - data["repeated_rows"]
    assert admap["responses_empty"] == data["empty_completions"] > 0
    assert set(record["admap_over_datasets"]) == {"seconds", "peak_added_bytes"}
    assert "admap / datasets" in capsys.readouterr().out
