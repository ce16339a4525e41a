"""One progress bar per stage (`admap.progress`): it starts at what was done before it opened, shows the cached
count, advances per chunk, and draws nothing when disabled. The embedding stage's own bar is tested with the
stage, in test_embedding_store.py."""

import pytest
from progress_bars import bar_states, record_bars

from admap import progress


@pytest.fixture
def bars(monkeypatch):
    return record_bars(monkeypatch)


def test_a_stage_bar_starts_at_the_work_done_and_shows_the_cached_count(bars, capsys):
    with progress.stage_bar("stage", 10, unit=" items", done=4, cached=3) as bar:
        bar.update(6)
    (drawn,) = bars
    assert (drawn.total, drawn.n, drawn.updates) == (10, 10, [6])
    states = bar_states(capsys.readouterr().err, "stage")
    assert "| 4/10 [" in states[0] and "| 10/10 [" in states[-1]
    assert all("cached=3" in state for state in states)


def test_advancing_moves_the_bar_once_each_batch_is_done(bars, capsys):
    batches = [[1, 2, 3], [4, 5, 6], [7]]
    with progress.stage_bar("batches", 7, unit=" items") as bar:
        # At each batch the bar has counted the batches before it, not this one yet.
        seen = [(batch, bar.n) for batch in progress.advancing(batches, bar, size=len)]
    assert seen == [([1, 2, 3], 0), ([4, 5, 6], 3), ([7], 6)] and bars[0].updates == [3, 3, 1] and bars[0].n == 7
    assert "cached" not in capsys.readouterr().err


def test_a_disabled_bar_draws_nothing(bars, capsys):
    with progress.stage_bar("quiet", 5, unit=" items", enabled=False, done=2, cached=2) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
