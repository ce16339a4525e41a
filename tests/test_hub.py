"""Hub out and hub in, up to the network boundary: a run exported and loaded back with `datasets`, uploaded
to a loopback Hub (tests/hub_server.py) with `huggingface_hub` and read back from it, and hub datasets read
through `admap map`'s input options from the same loopback Hub.

`huggingface_hub` and `datasets` read HF_ENDPOINT and the offline switches once, at import, and this
session is offline (conftest): reads from the loopback Hub run in a child process with HF_ENDPOINT set
and the offline switches unset; uploads run here, with `HfApi(endpoint=...)` and the switches patched
for the one test. Uploads take huggingface_hub's LFS path (HF_HUB_DISABLE_XET): the loopback Hub has no
Xet storage.
"""

import gzip
import io
import json
import os
import shutil
import subprocess
import sys

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from admap.cli import main
from admap.hub import export_run, push_run
from admap.hub.export import MAP_CONFIG
from admap.inputs import InputOptions
from admap.load import load_preferences
from admap.load.readers import HubDataset, pin_commit
from tests.hub_server import HubServer
from tests.runs import topic_rows

TOKEN = "hf_loopback_test_token"


# ---------------------------------------------------------------- runs to export


def map_run(tmp_path, name, *extra):
    """A model-free `admap map` run (ROUGE-L against a proxy column) with its figure; returns its folder."""
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in topic_rows([f"topic {k}" for k in range(30)])))
    run = tmp_path / name
    argv = ["map", str(data), "--scorer", "rouge_l", "--proxy-column", "proxy", "--generator", "none"]
    assert main([*argv, "--out", str(run), "--quiet", "--no-view", *extra]) == 0
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return map_run(tmp_path_factory.mktemp("runs"), "topics")


@pytest.fixture(scope="module")
def run_with_empty_subset(tmp_path_factory):
    """No instruction's ROUGE-L scores vary by more than 10: high_variance holds no pair."""
    absolute = ["--region-method", "absolute", "--variance-threshold", "10", "--mean-threshold", "0.35"]
    run = map_run(tmp_path_factory.mktemp("runs"), "no_variance", *absolute)
    assert (run / "pairs" / "high_variance.jsonl").stat().st_size == 0
    return run


def jsonl_records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pair_subsets(run):
    return {path.stem: jsonl_records(path) for path in (run / "pairs").glob("*.jsonl")}


def load_folder(folder, name, tmp_path, **kwargs):
    return datasets.load_dataset(str(folder), name, split="train", cache_dir=str(tmp_path / "cache"), **kwargs)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def assert_same_map(loaded: pd.DataFrame, run):
    expected = pd.read_parquet(run / "map.parquet")
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), expected, check_dtype=False)


# ---------------------------------------------------------------- export


def test_export_loads_back_as_the_runs_rows(run_dir, tmp_path):
    export = export_run(run_dir, tmp_path / "export", repo_id="me/topics")
    folder = tmp_path / "export"
    assert export.folder == folder and export.default_config == "high_mean"
    assert {p.name for p in folder.iterdir()} == {"README.md", "map.png", "data"}
    assert (folder / "map.png").read_bytes() == (run_dir / "map.png").read_bytes()
    subsets = pair_subsets(run_dir)
    assert [c.name for c in export.configs] == ["high_mean", "low_mean", "high_variance", "random", "full", "map"]
    for name, records in subsets.items():
        loaded = load_folder(folder, name, tmp_path)
        assert list(loaded) == records, name
        assert list(loaded.column_names) == list(records[0]), name  # TRL's columns, in the records' order
    assert_same_map(load_folder(folder, MAP_CONFIG, tmp_path).to_pandas(), run_dir)
    # Without a name, `load_dataset` reads the default configuration.
    assert list(load_folder(folder, None, tmp_path)) == subsets["high_mean"]


def test_card_front_matter_lists_every_configuration(run_dir, tmp_path):
    export = export_run(run_dir, tmp_path / "export", repo_id="me/topics")
    card = (tmp_path / "export" / "README.md").read_text()
    metadata = front_matter(card)
    summary = json.loads((run_dir / "summary.json").read_text())
    configs = {c["config_name"]: c for c in metadata["configs"]}
    assert list(configs) == [c.name for c in export.configs]
    assert [name for name, c in configs.items() if c.get("default")] == ["high_mean"]
    for config in export.configs:
        assert configs[config.name]["data_files"] == [{"split": "train", "path": f"data/{config.name}/train-*.parquet"}]
        assert f"| {config.rows} | {config.instructions} |" in card
    # A local source file has no recorded license: `other`, and the card says why and what to do.
    assert metadata["license"] == "other" and "admap push --license" in card
    assert {"dpo", "alignment-data-map"} <= set(metadata["tags"]) and metadata["task_categories"] == ["text-generation"]
    assert metadata["size_categories"] == ["n<1K"]
    thresholds = summary["thresholds"]
    for fact in (
        "topics.jsonl",  # the source, by file name: no local folder is published
        "`rouge_l`",
        f"{thresholds['variance']:.6g}",
        f"{thresholds['mean']:.6g}",
        "high_mean: 10, low_mean: 10, high_variance: 10",
        summary["command"],
        summary["admap_version"],
        summary["run_id"],
        "eprint        = {2505.23114}",
        'load_dataset("me/topics", "high_mean", split="train")',
    ):
        assert fact in card, fact
    assert str(run_dir.parent) not in card.replace(summary["command"], "")


def test_an_empty_subset_gets_no_configuration_and_a_note(run_with_empty_subset, tmp_path):
    export = export_run(run_with_empty_subset, tmp_path / "export")
    empty = next(c for c in export.configs if c.name == "high_variance")
    assert empty.rows == 0 and empty.files == () and not (tmp_path / "export" / "data" / "high_variance").exists()
    card = (tmp_path / "export" / "README.md").read_text()
    assert "high_variance" not in [c["config_name"] for c in front_matter(card)["configs"]]
    assert "no configuration: it holds no pairs" in card
    with pytest.raises(ValueError, match="high_variance"):
        load_folder(tmp_path / "export", "high_variance", tmp_path)
    assert list(load_folder(tmp_path / "export", "full", tmp_path)) == jsonl_records(
        run_with_empty_subset / "pairs" / "full.jsonl"
    )


def test_a_subset_is_sharded_and_read_back_in_order(run_dir, tmp_path):
    export = export_run(run_dir, tmp_path / "export", shard_bytes=4000)
    full = next(c for c in export.configs if c.name == "full")
    assert len(full.files) > 2
    assert full.files == tuple(
        f"data/full/train-{i:05d}-of-{len(full.files):05d}.parquet" for i in range(len(full.files))
    )
    assert list(load_folder(tmp_path / "export", "full", tmp_path)) == jsonl_records(run_dir / "pairs" / "full.jsonl")


def test_fields_some_records_lack_become_nullable_columns(run_dir, tmp_path):
    """A subset `admap select` wrote with scores beside the pairs: every field is a column of every
    configuration, null where a record lacks it; the scored subset follows `admap map`'s."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    records = jsonl_records(run / "pairs" / "high_mean.jsonl")
    scored = [{**r, "score_chosen": None if k == 0 else 0.5 + k, "score_rejected": 0.25} for k, r in enumerate(records)]
    (run / "pairs" / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scored))
    export = export_run(run, tmp_path / "export")
    assert [c.name for c in export.configs][-2:] == ["scored", "map"]
    assert list(load_folder(tmp_path / "export", "scored", tmp_path)) == scored
    high_mean = list(load_folder(tmp_path / "export", "high_mean", tmp_path))
    assert high_mean == [{**r, "score_chosen": None, "score_rejected": None} for r in records]


def test_export_refuses_folders_it_would_harm(run_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_run(run_dir, tmp_path / "mine")
    with pytest.raises(ValueError, match="inside the run"):
        export_run(run_dir, run_dir / "hub")
    # An earlier export is replaced whole.
    export_run(run_dir, tmp_path / "export", shard_bytes=4000)
    export_run(run_dir, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export" / "data" / "full").iterdir()) == ["train-00000-of-00001.parquet"]


def test_push_out_writes_the_export_offline_and_needs_a_destination(run_dir, tmp_path, capsys):
    assert main(["push", str(run_dir), "--out", str(tmp_path / "export"), "--license", "mit", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "export")
    assert front_matter((tmp_path / "export" / "README.md").read_text())["license"] == "mit"
    assert main(["push", str(run_dir), "--quiet"]) == 2
    assert main(["push", str(run_dir), "not-a-repo-id", "--quiet"]) == 2


# ---------------------------------------------------------------- the loopback Hub


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def online(monkeypatch):
    """This process's huggingface_hub online, uploading over LFS (the loopback Hub has no Xet storage)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)


def hub_env(hub, tmp_path) -> dict:
    """A child process's environment: the loopback Hub as the endpoint, online, its own caches."""
    # huggingface_hub reads TRANSFORMERS_OFFLINE as HF_HUB_OFFLINE.
    offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in offline}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_TOKEN=TOKEN,
        ADMAP_CACHE=str(tmp_path / "admap-cache"),
    )
    return env


def run_child(code: str, env: dict, *args: str) -> dict | list:
    """Run ``code`` in a child process; it prints its result as JSON on its last line."""
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOAD_BACK = """
import json, sys
import datasets
repo, out = sys.argv[1], sys.argv[2]
names = json.loads(sys.argv[3])
for name in names:
    datasets.load_dataset(repo, name, split="train").to_parquet(f"{out}/{name}.parquet")
streamed = list(datasets.load_dataset(repo, names[0], split="train", streaming=True))
print(json.dumps(streamed))
"""


def test_push_uploads_the_export_and_datasets_reads_it_back(run_dir, hub, online, tmp_path):
    commit = push_run(run_dir, "me/topics", endpoint=hub.url, token=TOKEN, folder=tmp_path / "export")
    assert commit.oid == hub.repos["me/topics"].branches["main"]
    assert commit.commit_url.endswith(f"/datasets/me/topics/commit/{commit.oid}")
    stored = hub.files("me/topics")
    exported = {
        p.relative_to(tmp_path / "export").as_posix(): p.read_bytes()
        for p in (tmp_path / "export").rglob("*")
        if p.is_file()
    }
    assert stored == {".gitattributes": stored[".gitattributes"], **exported}
    # Parquet files and the figure travel over LFS (batch, upload to the Hub's href, verify), the card inline.
    assert hub.lfs_paths("me/topics") == {path for path in exported if path.endswith((".parquet", ".png"))}
    assert {(r.method, r.path) for r in hub.log} >= {("POST", "/datasets/me/topics.git/info/lfs/objects/batch")}
    assert set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert not hub.repos["me/topics"].private
    # The dataset as a user reads it: `datasets.load_dataset("me/topics", ...)` against the Hub.
    subsets = pair_subsets(run_dir)
    names = ["high_mean", *sorted(set(subsets) - {"high_mean"}), MAP_CONFIG]
    streamed = run_child(LOAD_BACK, hub_env(hub, tmp_path), "me/topics", str(tmp_path), json.dumps(names))
    assert streamed == subsets["high_mean"]
    for name, records in subsets.items():
        assert pq.read_table(tmp_path / f"{name}.parquet").to_pylist() == records, name
    assert_same_map(pd.read_parquet(tmp_path / f"{MAP_CONFIG}.parquet"), run_dir)


def test_a_second_push_replaces_the_first_and_branches_stay_apart(
    run_dir, run_with_empty_subset, hub, online, tmp_path
):
    push_run(run_dir, "me/topics", endpoint=hub.url, token=TOKEN, shard_bytes=4000)
    first = hub.files("me/topics")
    assert any(path.startswith("data/high_variance/") for path in first)
    # The second run has no high_variance pairs and fewer shards: nothing of the first run's data stays.
    push_run(run_with_empty_subset, "me/topics", endpoint=hub.url, token=TOKEN, commit_message="no variance")
    second = hub.files("me/topics")
    exported = export_run(run_with_empty_subset, tmp_path / "export")
    assert sorted(second) == sorted(
        [".gitattributes", "README.md", "map.png", *(f for c in exported.configs for f in c.files)]
    )
    assert hub.repos["me/topics"].messages[hub.repos["me/topics"].branches["main"]] == "no variance"
    # A push to a new branch leaves main as it was.
    commit = push_run(run_dir, "me/topics", endpoint=hub.url, token=TOKEN, revision="topics-v2")
    assert hub.files("me/topics") == second
    assert hub.repos["me/topics"].branches["topics-v2"] == commit.oid
    assert hub.files("me/topics", "topics-v2")["README.md"] == first["README.md"]


def test_private_creates_a_private_repo_and_refuses_a_public_one(run_dir, hub, online):
    push_run(run_dir, "me/private", endpoint=hub.url, token=TOKEN, private=True)
    assert hub.repos["me/private"].private
    push_run(run_dir, "me/public", endpoint=hub.url, token=TOKEN)
    commits = dict(hub.repos["me/public"].branches)
    with pytest.raises(ValueError, match="exists and is public"):
        push_run(run_dir, "me/public", endpoint=hub.url, token=TOKEN, private=True)
    assert hub.repos["me/public"].branches == commits


# ---------------------------------------------------------------- reading hub datasets


def preference_rows(count, tag=""):
    return [
        {
            "prompt": f"Question {k}{tag}?",
            "chosen": f"A good answer to question {k}{tag}.",
            "rejected": f"A poor answer to question {k}{tag}.",
            "score_chosen": 8.0,
            "score_rejected": 2.0,
        }
        for k in range(count)
    ]


def parquet_bytes(rows, *, row_group_size):
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def gzip_jsonl(rows):
    return gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0)


PREFS_CARD = """---
configs:
- config_name: short
  default: true
  data_files:
  - split: train
    path: data/short/*.parquet
- config_name: long
  data_files:
  - split: train
    path: data/long/*.parquet
---
# Preferences in two configurations
"""
SHORT_SHARDS = 4
SHORT_ROWS_PER_SHARD = 25


@pytest.fixture
def hub_datasets(hub, hh_rlhf_path):
    """Two preference datasets on the loopback Hub, as the hub holds them:

    ``org/prefs``: configurations ``short`` (4 Parquet files of 25 rows, row groups of 5) and ``long``,
    which its second commit replaced. ``org/hh``: HH-RLHF transcripts in folders, as Anthropic/hh-rlhf
    holds them (``harmless-base/``, ``helpful-base/``: no configurations; data_dir picks one), MIT.
    """
    short = preference_rows(SHORT_SHARDS * SHORT_ROWS_PER_SHARD)
    shards = {
        f"data/short/train-{i:05d}-of-{SHORT_SHARDS:05d}.parquet": parquet_bytes(
            short[i * SHORT_ROWS_PER_SHARD : (i + 1) * SHORT_ROWS_PER_SHARD], row_group_size=5
        )
        for i in range(SHORT_SHARDS)
    }
    long_v1, long_v2 = preference_rows(10, " (v1)"), preference_rows(12, " (v2)")
    first = hub.add_commit(
        "org/prefs",
        {
            "README.md": PREFS_CARD.encode(),
            **shards,
            "data/long/train-00000-of-00001.parquet": parquet_bytes(long_v1, row_group_size=5),
        },
    )
    second = hub.add_commit(
        "org/prefs", {"data/long/train-00000-of-00001.parquet": parquet_bytes(long_v2, row_group_size=5)}
    )
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as handle:
        transcripts = [json.loads(next(handle)) for _ in range(50)]
    harmless, helpful = transcripts[:30], transcripts[30:]
    hh = hub.add_commit(
        "org/hh",
        {
            "README.md": b"---\nlicense: mit\n---\n# Transcripts in folders\n",
            "harmless-base/train.jsonl.gz": gzip_jsonl(harmless),
            "helpful-base/train.jsonl.gz": gzip_jsonl(helpful),
        },
    )
    return {
        "prefs_first": first,
        "prefs_main": second,
        "hh_main": hh,
        "short": short,
        "short_shards": shards,
        "long_v1": long_v1,
        "long_v2": long_v2,
        "harmless": harmless,
        "helpful": helpful,
    }


READ_INPUTS = """
import json, sys
from admap.errors import InputError
from admap.inputs import InputOptions
from admap.load.readers import HubDataset, pin_commit

results = []
for case in json.loads(sys.argv[1]):
    try:
        data = InputOptions(**case).read(progress=False)
    except InputError as error:
        results.append({"error": str(error), "file": error.file})
        continue
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    prompt = dict(zip(data.instructions["instruction_id"], data.instructions["instruction"]))
    pairs = [[prompt[p.instruction_id], text[p.chosen_id], text[p.rejected_id]] for p in data.preferences.itertuples()]
    results.append({"pairs": pairs, "rows": data.preferences["source_row"].tolist(), "report": data.report()})
print(json.dumps(results, default=str))
"""


def read_inputs(hub, tmp_path, cases):
    return run_child(READ_INPUTS, hub_env(hub, tmp_path), json.dumps(cases))


def local_read(rows, tmp_path, name, **kwargs):
    """The same rows read from a local file: what a hub read must give."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_preferences(str(path), progress=False, **kwargs)
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    prompt = dict(zip(data.instructions["instruction_id"], data.instructions["instruction"]))
    pairs = [[prompt[p.instruction_id], text[p.chosen_id], text[p.rejected_id]] for p in data.preferences.itertuples()]
    return {"pairs": pairs, "rows": data.preferences["source_row"].tolist(), "counts": data.counts()}


def test_input_options_read_configurations_folders_files_and_revisions(hub, hub_datasets, tmp_path):
    d = hub_datasets
    cases = [
        {"dataset": "org/prefs", "dataset_config": "long"},
        {"dataset": "org/prefs", "dataset_config": "long", "revision": d["prefs_first"]},
        {"dataset": "org/prefs", "dataset_config": "short", "streaming": True},
        {"dataset": "org/hh", "data_dir": "harmless-base"},
        {"dataset": "org/hh", "data_files": ["helpful-base/*.jsonl.gz"], "streaming": True},
        {"dataset": "org/prefs", "dataset_config": "no-such-config"},
        {"dataset": "org/no-such-dataset"},
        {"dataset": "org/prefs", "revision": "no-such-branch"},
    ]
    long_main, long_first, short, harmless, helpful, *errors = read_inputs(hub, tmp_path, cases)
    expected = {
        "long_v2": local_read(d["long_v2"], tmp_path, "long_v2"),
        "long_v1": local_read(d["long_v1"], tmp_path, "long_v1"),
        "short": local_read(d["short"], tmp_path, "short"),
        "harmless": local_read(d["harmless"], tmp_path, "harmless"),
        "helpful": local_read(d["helpful"], tmp_path, "helpful"),
    }
    for got, name in [
        (long_main, "long_v2"),
        (long_first, "long_v1"),
        (short, "short"),
        (harmless, "harmless"),
        (helpful, "helpful"),
    ]:
        assert "error" not in got, got
        assert got["pairs"] == expected[name]["pairs"], name
        # Row numbers count from 1 across the split's files, as in the one local file.
        assert got["rows"] == expected[name]["rows"] == list(range(1, len(got["rows"]) + 1)), name
        counts = {k: v for k, v in got["report"].items() if k in expected[name]["counts"]}
        assert counts == expected[name]["counts"], name
    # The report records what was read: the part of the dataset and the commit the revision pointed to.
    assert long_main["report"]["hub"] == {
        "repo_id": "org/prefs",
        "split": "train",
        "name": "long",
        "data_dir": None,
        "data_files": [],
        "revision": None,
        "streaming": False,
        "commit": d["prefs_main"],
        "license": None,
    }
    assert long_first["report"]["hub"]["commit"] == long_first["report"]["hub"]["revision"] == d["prefs_first"]
    assert harmless["report"]["hub"]["commit"] == d["hh_main"] and harmless["report"]["hub"]["license"] == "mit"
    assert harmless["report"]["hub"]["data_dir"] == "harmless-base" and harmless["report"]["format"] == "hh_rlhf"
    assert helpful["report"]["hub"]["data_files"] == ["helpful-base/*.jsonl.gz"]
    # Errors stay InputErrors naming the source.
    missing_config, missing_dataset, missing_revision = errors
    assert missing_config["file"] == "org/prefs" and "no-such-config" in missing_config["error"]
    assert missing_dataset["file"] == "org/no-such-dataset" and "no dataset of that name" in missing_dataset["error"]
    assert missing_revision["file"] == "org/prefs" and "no revision 'no-such-branch'" in missing_revision["error"]


def test_hub_options_are_refused_for_a_local_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(preference_rows(1)[0]) + "\n")
    with pytest.raises(ValueError, match=f"--revision, --streaming read part of a hub dataset; {path} is a local"):
        InputOptions(dataset=str(path), revision="main", streaming=False).read(progress=False)
    with pytest.raises(ValueError, match="--data-dir read part of a hub dataset; demo is a local file"):
        InputOptions(data_dir="harmless-base").read(progress=False)


def test_an_unreachable_hub_leaves_the_commit_unpinned_with_a_warning(online, monkeypatch, caplog):
    """`datasets` then decides (it retries, then reads its cache or fails with an InputError, as offline)."""
    import huggingface_hub.constants

    with HubServer() as closed:
        pass  # a loopback port nothing listens on any more
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", closed.url)
    dataset = HubDataset("org/prefs", revision="main")
    assert pin_commit(dataset) == dataset
    assert "org/prefs: the hub could not be asked which commit is read (ConnectError" in caplog.text


@pytest.mark.parametrize("streaming", [None, False])
def test_limit_downloads_only_the_files_it_reads(hub, hub_datasets, tmp_path, streaming):
    """--limit 7 of a configuration in four Parquet files: streamed (the default with --limit), only the
    first file is fetched (twice, each time whole at this size: once for its schema, once for its rows);
    downloading the split first fetches all four, once each."""
    case = {"dataset": "org/prefs", "dataset_config": "short", "limit": 7}
    if streaming is not None:
        case["streaming"] = streaming
    hub.log.clear()
    [got] = read_inputs(hub, tmp_path, [case])
    assert got["pairs"] == local_read(hub_datasets["short"][:7], tmp_path, "first7")["pairs"]
    assert got["report"]["rows_read"] == 7 and got["report"]["hub"]["streaming"] == (streaming is None)
    shards = hub_datasets["short_shards"]
    downloaded = {path: sent for path, sent in hub.downloads("org/prefs").items() if path in shards}
    sizes = {path: len(data) for path, data in shards.items()}
    first = min(shards)
    if streaming is None:
        assert set(downloaded) == {first} and downloaded[first] <= 2 * sizes[first]
    else:
        assert downloaded == sizes


def test_map_reads_from_the_hub_and_push_publishes_the_run(hub, hub_datasets, tmp_path):
    """The whole loop as a user runs it: `admap map` of a hub dataset's folder, then `admap push` of the run."""
    env = hub_env(hub, tmp_path)
    run = tmp_path / "hh-run"
    admap = [sys.executable, "-m", "admap.cli"]
    mapped = ["map", "org/hh", "--data-dir", "harmless-base", "--scorer", "annotation", "--out", str(run)]
    for argv in ([*mapped, "--quiet", "--no-view"], ["push", str(run), "me/hh-map", "--quiet"]):
        done = subprocess.run([*admap, *argv], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["hub"]["commit"] == hub_datasets["hh_main"]
    assert done.stdout.strip().endswith(f"/datasets/me/hh-map/commit/{hub.repos['me/hh-map'].branches['main']}")
    card = hub.files("me/hh-map")["README.md"].decode()
    metadata = front_matter(card)
    assert metadata["license"] == "mit" and metadata["source_datasets"] == ["org/hh"]
    assert f"`{hub_datasets['hh_main']}`" in card and "`harmless-base`" in card
    assert TOKEN not in card and TOKEN not in done.stderr


def test_select_push_to_hub_publishes_the_run_with_the_new_subset(run_dir, hub, online, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    # An --out outside the run's pairs/ would not be part of what is published: refused before anything is written.
    outside = ["select", str(run), "--strategy", "random", "--out", str(tmp_path / "x.jsonl")]
    assert main([*outside, "--push-to-hub", "me/refused", "--quiet"]) == 2
    assert "me/refused" not in hub.repos and not (tmp_path / "x.jsonl").exists()
    argv = ["select", str(run), "--strategy", "random", "--fraction", "0.5", "--push-to-hub", "me/selected"]
    assert main([*argv, "--push-private", "--quiet"]) == 0
    assert hub.repos["me/selected"].private
    card = front_matter(hub.files("me/selected")["README.md"].decode())
    names = {config["config_name"] for config in card["configs"]}
    assert {"high_mean", "random", "random-f0.5-annotated-seed42", MAP_CONFIG} <= names


def test_the_python_api_pushes_as_admap_push_does(run_dir, hub, online, monkeypatch, tmp_path):
    import huggingface_hub.constants

    import admap

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    url = admap.open_run(run_dir).push_to_hub("me/api", out=str(tmp_path / "export"), license="mit")
    assert url.endswith(f"/datasets/me/api/commit/{hub.repos['me/api'].branches['main']}")
    stored = hub.files("me/api")
    assert stored["README.md"] == (tmp_path / "export" / "README.md").read_bytes()
    assert front_matter(stored["README.md"].decode())["license"] == "mit"
    with pytest.raises(ValueError, match="owner/name"):
        admap.open_run(run_dir).push_to_hub("no-owner")
