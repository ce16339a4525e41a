"""Model-free `admap map` runs for tests: ROUGE-L or the annotation against a proxy column, no model loaded."""

import json

from admap.cli import main


def map_without_models(rows, tmp_path, *, scorer="rouge_l", name="run"):
    """Write ``rows`` (records with a ``proxy`` field) as JSONL and map them; returns the run directory."""
    data = tmp_path / "data.jsonl"  # one file for every run, so that runs of it can be compared
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / name
    argv = [
        "map",
        str(data),
        "--scorer",
        scorer,
        "--proxy-column",
        "proxy",
        "--generator",
        "none",
        "--out",
        str(run),
        "--quiet",
        "--no-plot",
    ]
    assert main(argv) == 0
    return run


def topic_rows(topics):
    """Alpaca-style pairs with a proxy column, one per topic: a clear answer against a refusal."""
    return [
        {
            "instruction": f"Explain {topic} in one sentence.",
            "input": "",
            "chosen": f"{topic.capitalize()} is explained here in one clear sentence number {k}.",
            "rejected": f"No. {'I will not talk about it. ' * (k % 3 + 1)}",
            "proxy": f"{topic.capitalize()}, explained in one clear sentence.",
        }
        for k, topic in enumerate(topics)
    ]
