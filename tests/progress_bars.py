"""Reading the progress bars a test drew: each bar `admap.progress` opens, and what each drew to captured
stderr."""

import re

from admap import progress


def record_bars(monkeypatch) -> list:
    """Every bar `admap.progress` draws from now on, each with ``updates``, the increments it was given."""
    drawn = []

    class RecordedBar(progress.tqdm):
        def __init__(self, *args, **kwargs):
            self.updates = []
            super().__init__(*args, **kwargs)
            drawn.append(self)

        def update(self, n=1):
            self.updates.append(n)
            return super().update(n)

    monkeypatch.setattr(progress, "tqdm", RecordedBar)
    return drawn


def bar_states(err: str, description: str) -> list[str]:
    """Every state drawn of the bars whose description starts with ``description``, in order, from captured
    stderr: tqdm redraws a bar in place after a carriage return, and another library's bar (a model's loading
    bar) may push it to a new line."""
    return [state for state in re.split(r"[\r\n]", err) if state.startswith(description)]
