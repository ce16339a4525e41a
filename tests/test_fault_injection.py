"""`admap map` killed at every kind of point, and run twice at once into one folder.

Each run is a real `admap map` process (ROUGE-L against a proxy column: no model to load) started
with tests/file_events on its path, which kills it with SIGKILL at its K-th file event (a file opened
for writing, a rename, a folder made or removed, the atomic exchange) or pauses it there. After a
kill, the folder holds either the previous run, untouched, or the new run complete; every command
accepts it; and a rerun writes exactly what an uninterrupted run writes, leaving nothing beside it.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from admap.run_folder import MapRun, lock_path

REPO = Path(__file__).resolve().parents[1]
VOLATILE_SUMMARY_KEYS = ("run_id", "created", "timings_s", "command", "files")


def _rows(topic: str, n: int = 30) -> list[dict]:
    return [
        {
            "instruction": f"Explain {topic} {i} in one sentence.",
            "input": "",
            "chosen": f"{topic.capitalize()} {i} is explained here in one clear sentence, number {i}.",
            "rejected": "No. " + f"I will not talk about {topic}. " * (i % 3 + 1),
            "proxy": f"{topic.capitalize()} {i}, explained in one clear sentence.",
        }
        for i in range(n)
    ]


def _write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def admap(*argv: str, watch: Path, events: dict | None = None, background: bool = False):
    """``admap ARGV`` in a child process whose file events under ``watch`` are counted (and acted on:
    ``events``, the tests/file_events variables without their prefix)."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "file_events"), str(REPO)]),
        "ADMAP_FILE_EVENTS_UNDER": str(watch),
        "HF_HUB_OFFLINE": "1",
    }
    env |= {f"ADMAP_FILE_EVENTS_{key}": str(value) for key, value in (events or {}).items()}
    command = [sys.executable, "-m", "admap.cli", *argv]
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def map_into(data: Path, out: Path, **kwargs):
    argv = ["map", str(data), "--scorer", "rouge_l", "--proxy-column", "proxy", "--generator", "none"]
    return admap(*argv, "--out", str(out), "--quiet", watch=out.parent, **kwargs)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_run(folder: Path, reference: Path) -> None:
    """The same outputs as ``reference``: tables, pairs and proxies equal, the summary equal but for
    what names this very run (its id, time, timings)."""
    ours, theirs = files_of(folder), files_of(reference)
    assert set(ours) == set(theirs)
    for name in ours:
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(folder / name), pd.read_parquet(reference / name))
        elif name.endswith(".jsonl"):
            assert ours[name] == theirs[name], name
    summaries = [json.loads((f / "summary.json").read_text()) for f in (folder, reference)]
    for summary in summaries:
        for key in VOLATILE_SUMMARY_KEYS:
            summary.pop(key)
        summary["config"].pop("out")
    assert summaries[0] == summaries[1]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p != lock_path(out))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return _write(_rows("tea"), folder / "a.jsonl"), _write(_rows("tides"), folder / "b.jsonl")


@pytest.fixture(scope="module")
def reference_b(datasets, tmp_path_factory):
    """Dataset B mapped without interruption, and how many file events a run of B over a previous run has."""
    folder = tmp_path_factory.mktemp("reference")
    a, b = datasets
    assert map_into(b, folder / "B").returncode == 0
    assert map_into(a, folder / "over" / "X").returncode == 0
    (folder / "log").mkdir()
    assert map_into(b, folder / "over" / "X", events={"LOG": folder / "log"}).returncode == 0
    (log,) = (folder / "log").glob("*.jsonl")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"exchange", "rmtree"} <= {e["event"] for e in events}  # the exchange and the old run's removal
    return folder / "B", len(events)


@pytest.mark.slow
@pytest.mark.parametrize("point", [0.0, 0.1, 0.3, 0.5, 0.7, 0.85, 1.0])
@pytest.mark.parametrize("previous", [True, False], ids=["over_a_run", "fresh"])
def test_a_killed_run_leaves_one_complete_run_and_a_rerun_matches(point, previous, datasets, reference_b, tmp_path):
    a, b = datasets
    reference, n_events = reference_b
    out = tmp_path / "X"
    if previous:
        assert map_into(a, out).returncode == 0
    before = files_of(out) if previous else None
    # The last events are the publication's: the exchange, the old run's removal.
    kill_at = max(1, round(point * n_events)) if previous else max(1, round(point * (n_events - 3)))
    killed = map_into(b, out, events={"KILL_AT": kill_at})
    assert killed.returncode == -9, killed.stderr[-2000:]

    if out.exists():
        MapRun.open(out)
        if files_of(out) != before:
            assert_same_run(out, reference)
        assert admap("select", str(out), "--strategy", "high_mean", watch=tmp_path).returncode == 0
    else:
        assert not previous  # a previous run is never taken away
        refused = admap("select", str(out), "--strategy", "high_mean", watch=tmp_path)
        assert refused.returncode == 2 and "is not an `admap map` run directory" in refused.stderr

    rerun = map_into(b, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_run(out, reference)
    assert leftovers(out) == []


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_holds_the_folder(datasets, reference_b, tmp_path):
    a, b = datasets
    reference, _ = reference_b
    out = tmp_path / "X"
    assert map_into(a, out).returncode == 0
    first = map_into(b, out, events={"PAUSE_AT": 4, "PAUSE_S": 8}, background=True)
    deadline = time.monotonic() + 60
    while '"pid"' not in (lock_path(out).read_text() if lock_path(out).exists() else ""):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)

    second = map_into(b, out)
    assert second.returncode == 2
    assert "is being written by another process" in second.stderr and f"pid {first.pid}" in second.stderr
    diagnosing = admap("diagnose", str(out), watch=tmp_path)
    assert diagnosing.returncode == 2 and "is being written by another process" in diagnosing.stderr

    assert first.wait(timeout=120) == 0, first.stderr.read()[-2000:]
    assert_same_run(out, reference)
    assert leftovers(out) == []


@pytest.mark.slow
def test_two_writers_started_together_end_with_one_complete_run(datasets, reference_b, tmp_path):
    _, b = datasets
    reference, _ = reference_b
    out = tmp_path / "X"
    writers = [map_into(b, out, background=True) for _ in range(2)]
    results = [(w.wait(timeout=300), w.stderr.read()) for w in writers]
    assert any(code == 0 for code, _ in results)
    for code, stderr in results:
        assert code == 0 or (code == 2 and "is being written by another process" in stderr), stderr[-2000:]
    assert_same_run(out, reference)
    assert leftovers(out) == []


def test_a_folder_of_other_files_is_never_replaced(datasets, tmp_path):
    a, _ = datasets
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    refused = map_into(a, out)
    assert refused.returncode == 2 and "not an admap run's (thesis.tex)" in refused.stderr
    assert files_of(out) == {"thesis.tex": b"years of work"}
    assert leftovers(out) == []
