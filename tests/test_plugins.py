"""An installed package extends admap through the ``admap.plugins`` entry-point group: its scorer reaches
`admap map` (flags, run, summary) without any file of admap touched. The package here is a module and its
``.dist-info`` on PYTHONPATH, which is what pip installs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

PLUGIN = """
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from admap.config import option
from admap.score import SCORERS, ScorerDefaults


@dataclass
class CharsOptions:
    scale: float = option(1.0, "divide each response's length by this")


@SCORERS.register("plugin_chars")
@dataclass
class CharsScorer(ScorerDefaults):
    name: ClassVar[str] = "plugin_chars"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = CharsOptions

    scale: float = 1.0

    @classmethod
    def from_options(cls, options, context):
        return cls(options.scale)

    def score(self, instructions, responses, *, preferences=None):
        return (responses["response"].str.len() / self.scale).to_numpy(dtype=np.float32)
"""


def install(site, name, module_text, entry_point):
    (site / f"{name}.py").write_text(textwrap.dedent(module_text))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[admap.plugins]\n{name} = {entry_point}\n")


def admap(site, *argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "admap.cli", *argv], env=env, capture_output=True, text=True)


def test_an_installed_plugins_scorer_reaches_admap_map(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "admap_chars", PLUGIN, "admap_chars")
    shown = admap(site, "map", "--help")
    assert shown.returncode == 0, shown.stderr
    help_text = " ".join(shown.stdout.split())
    assert "--plugin-chars-scale" in help_text and "scorer plugin_chars: divide each response" in help_text
    out = tmp_path / "run"
    ran = admap(site, "map", "--scorer", "plugin_chars", "--plugin-chars-scale", "10", "--out", str(out), "--quiet")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scorer"]["label"] == "plugin_chars" and summary["config"]["plugin_chars"] == {"scale": 10.0}
    scores = pd.read_parquet(out / "scores.parquet")
    assert np.allclose(scores["alignment_score"], scores["response_chars"] / 10)  # the option reached the scorer
    # Without the package, the same command names the scorers it knows.
    missing = admap(tmp_path, "map", "--scorer", "plugin_chars", "--out", str(tmp_path / "other"), "--quiet")
    assert missing.returncode == 2 and "unknown scorer 'plugin_chars'" in missing.stderr


def test_a_broken_plugin_is_named(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "admap_broken", "raise RuntimeError('no such model')\n", "admap_broken")
    shown = admap(site, "map", "--help")
    assert shown.returncode != 0
    assert "admap plugin 'admap_broken' (admap_broken) failed to load: no such model" in shown.stderr
