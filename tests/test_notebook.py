"""examples/quickstart.ipynb runs end to end offline: every code cell in order, in one namespace, as a
kernel would run them, each cell's value shown through IPython's display formatter as Jupyter shows it."""

import ast
import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter
from matplotlib.figure import Figure

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def run_cell(source: str, namespace: dict):
    """Run a cell as IPython does: its statements, then its last expression's value, which is returned."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    return None


@pytest.mark.slow
def test_the_quickstart_notebook_runs_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [
        "".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text())["cells"] if cell["cell_type"] == "code"
    ]
    assert all(not cell["outputs"] for cell in json.loads(NOTEBOOK.read_text())["cells"] if "outputs" in cell)
    namespace: dict = {}
    shown = [run_cell(source, namespace) for source in cells]
    formats = [DisplayFormatter().format(value)[0] if value is not None else {} for value in shown]

    data_map = namespace["data_map"]
    assert data_map.path.resolve() == tmp_path / "runs" / "demo-notebook"
    assert data_map.summary["dataset"]["instructions"] == len(data_map.table)
    assert "text/html" in formats[1] and "high_mean" in formats[1]["text/html"]
    assert isinstance(shown[2], pd.DataFrame) and len(shown[2]) == 5
    assert isinstance(shown[3], Figure)
    pairs = namespace["pairs"]
    assert isinstance(pairs, datasets.Dataset)
    assert len(pairs) == data_map.summary["pairs"]["high_mean"]["pairs"]
    assert shown[5][0]["role"] == "assistant"
    assert "text/markdown" in formats[6] and "the scores contradict" in formats[6]["text/markdown"]
    assert formats[7]["text/html"].startswith("<iframe srcdoc=")
    own = namespace["own_map"]
    assert own.summary["scorer"]["name"] == "self_similarity"
    assert shown[8]["region"].notna().all() and len(shown[8]) == 4
