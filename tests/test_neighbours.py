"""`admap neighbours`: near-duplicate groups, contamination with evaluation prompts, and `admap select`
leaving them out; on planted copies among real prompts."""

import json

import numpy as np
import pandas as pd
import pytest

from admap.cli import main
from admap.errors import InputError
from admap.neighbours import (
    EVALUATION_SETS,
    near_duplicate_groups,
    ngram_overlaps,
    read_prompts,
)
from benchmarks.bench_neighbours import HH_RLHF_TEST_FILE, first_human_turns, planted_rows
from tests.runs import map_without_models


def test_groups_link_chains_keep_the_first_and_name_the_closest_member():
    ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    # a~b (0.97), b~c (0.93), d and e apart; k = 2, -1 where a search found nothing.
    positions = np.array([[1, 3], [0, 2], [1, 4], [4, -1], [3, 2]])
    similarities = np.array([[0.97, 0.2], [0.97, 0.93], [0.93, 0.1], [0.5, -np.inf], [0.5, 0.1]], dtype=np.float32)
    groups = near_duplicate_groups(ids, similarities, positions, 0.92).set_index("instruction_id")
    assert list(groups.index) == ["a", "b", "c"] and set(groups["group"]) == {0}
    assert (groups["group_size"] == 3).all() and groups["is_kept"].tolist() == [True, False, False]
    assert (groups["kept_id"] == "a").all()
    assert groups.loc["c", "closest_id"] == "b" and groups.loc["c", "closest_similarity"] == pytest.approx(0.93)
    assert near_duplicate_groups(ids, similarities, positions, 0.98).empty
    # Two groups are numbered in the order of their first members.
    two = near_duplicate_groups(ids, similarities, positions, 0.5)
    assert two.groupby("group")["instruction_id"].first().tolist() == ["a", "d"]


def test_ngram_overlap_finds_copies_verbatim_inside_text_and_short_prompts():
    prompts = [
        "Write a Python program that reads all the text files under a directory and returns the top words.",
        "How many integers satisfy |x + 5| < 10?",
    ]
    instructions = [
        prompts[0],
        "Homework help: write a Python program that reads all the text files under a directory and returns "
        "the top words. Thanks!",
        "Tell me how many integers satisfy |x + 5| < 10 please",  # the short prompt's words, in order
        "Write a program in Rust that counts lines.",
    ]
    overlap, nearest = ngram_overlaps(instructions, prompts)
    assert overlap[:3].tolist() == [1.0, 1.0, 1.0] and nearest[:3].tolist() == [0, 0, 1]
    assert overlap[3] == 0 and nearest[3] == -1


def test_the_shipped_sets_and_a_prompt_file_are_read_and_bad_lines_named(tmp_path):
    mt_bench, evol = read_prompts("mt_bench"), read_prompts("evol_instruct")
    assert len(mt_bench) == 80 and len(evol) == 218 and set(EVALUATION_SETS) == {"mt_bench", "evol_instruct"}
    assert mt_bench.iloc[0]["eval_id"] == "81" and mt_bench.iloc[0]["eval_prompt"].startswith("Compose an engaging")
    mine = tmp_path / "arena.jsonl"
    mine.write_text('{"id": "q1", "prompt": "Name three rivers."}\n\n{"turns": ["First turn", "second"]}\n')
    table = read_prompts(str(mine))
    assert table.values.tolist() == [["arena", "q1", "Name three rivers."], ["arena", "3", "First turn"]]
    mine.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"arena.jsonl, row 2: not JSON"):
        read_prompts(str(mine))
    mine.write_text('{"prompt": "ok"}\n{"answer": "no prompt"}\n')
    with pytest.raises(InputError, match=r"row 2, field 'turns/prompt.*': no prompt text"):
        read_prompts(str(mine))
    with pytest.raises(FileNotFoundError, match="neither a shipped evaluation set"):
        read_prompts("alpaca_eval")


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A map of 300 real prompts (HH-RLHF's first human turns) and the planted near duplicates and copies of
    MT-Bench and Evol-Instruct prompts, scored without models; then `admap neighbours` on it."""
    tmp_path = tmp_path_factory.mktemp("neighbours")
    background = first_human_turns(HH_RLHF_TEST_FILE)[:300]
    planted = planted_rows(background, seed=0)
    originals = set(planted.loc[planted["kind"] == "near_duplicate_original", "text"])
    texts = [t for t in background if t not in originals] + planted["text"].tolist()
    kinds = ["background"] * (len(texts) - len(planted)) + planted["kind"].tolist()
    rows = [
        {
            "instruction": text,
            "proxy": "A helpful, careful answer.",
            "completions": [
                {"response": "A helpful, careful answer.", "fine-grained_score": 5.0},
                {"response": "No.", "fine-grained_score": 1.0},
            ],
        }
        for text in texts
    ]
    run = map_without_models(rows, tmp_path)
    assert main(["neighbours", str(run), "--quiet"]) == 0
    truth = pd.DataFrame({"instruction": texts, "kind": kinds})
    truth["pair"] = [None] * (len(texts) - len(planted)) + planted["pair"].tolist()
    truth["eval_key"] = [None] * (len(texts) - len(planted)) + planted["eval_key"].tolist()
    map_table = pd.read_parquet(run / "map.parquet", columns=["instruction_id", "instruction"])
    return run, truth.merge(map_table, on="instruction", how="left")


@pytest.mark.slow
def test_planted_near_duplicates_and_evaluation_copies_are_found(planted_run):
    run, truth = planted_run
    folder = run / "neighbours"
    groups = pd.read_parquet(folder / "near_duplicates.parquet")
    contamination = pd.read_parquet(folder / "contamination.parquet").merge(truth, on="instruction_id")
    summary = json.loads((folder / "neighbours.json").read_text())
    group_of = dict(zip(groups["instruction_id"], groups["group"]))

    pairs = truth[truth["pair"].notna()].groupby("pair")["instruction_id"].apply(list)
    found = [all(i in group_of for i in members) and len({group_of[i] for i in members}) == 1 for members in pairs]
    planted_members = set(truth.loc[truth["pair"].notna(), "instruction_id"])
    planted_groups = {group_of[i] for i in planted_members if i in group_of}
    mixed = groups[groups["group"].isin(planted_groups) & ~groups["instruction_id"].isin(planted_members)]
    recall = float(np.mean(found))
    precision = 1 - len(mixed) / max(groups["group"].isin(planted_groups).sum(), 1)
    print(f"near duplicates: recall {recall:.2f} ({sum(found)}/{len(found)} pairs), precision {precision:.2f}")
    assert recall >= 0.9 and precision == 1.0

    flagged = contamination["is_contaminated"]
    planted = contamination["eval_key"].notna()
    matched = (contamination["eval_set"] + ":" + contamination["eval_id"] == contamination["eval_key"]) | (
        contamination["ngram_eval_set"] + ":" + contamination["ngram_eval_id"] == contamination["eval_key"]
    )
    for kind, least in (("eval_verbatim", 1.0), ("eval_embedded_copy", 1.0), ("eval_paraphrase", 0.75)):
        of_kind = contamination["kind"] == kind
        recall = (flagged & matched & of_kind).sum() / of_kind.sum()
        print(f"contamination, {kind}: recall {recall:.2f} of {of_kind.sum()}")
        assert recall >= least
    precision = (flagged & planted).sum() / flagged.sum()
    print(f"contamination: precision {precision:.2f} ({flagged.sum()} flagged)")
    assert precision == 1.0
    assert summary["contamination"]["contaminated"] == flagged.sum()
    assert summary["contamination"]["against"] == {"mt_bench": 80, "evol_instruct": 218}
    report = (folder / "report.md").read_text()
    assert "| kept | near duplicate | cosine |" in report and "nearest evaluation prompt" in report
    neighbours = pd.read_parquet(folder / "neighbours.parquet")
    assert (neighbours["instruction_id"] != neighbours["neighbour_id"]).all()
    assert neighbours.groupby("instruction_id").size().eq(10).all()


@pytest.mark.slow
def test_select_leaves_out_what_neighbours_flagged_and_records_it(planted_run, tmp_path):
    run, truth = planted_run
    groups = pd.read_parquet(run / "neighbours" / "near_duplicates.parquet")
    contaminated = pd.read_parquet(run / "neighbours" / "contamination.parquet").query("is_contaminated")
    out = tmp_path / "pairs.jsonl"
    argv = ["select", str(run), "--strategy", "full", "--drop-near-duplicates", "--drop-contaminated"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_suffix("").with_suffix(".summary.json").read_text())
    dropped = set(groups.loc[~groups["is_kept"], "instruction_id"]) | set(contaminated["instruction_id"])
    record = summary["neighbours"]
    assert record["near_duplicates"]["left_out"] == (~groups["is_kept"]).sum()
    assert set(record["contaminated"]["left_out_ids"]) == set(contaminated["instruction_id"])
    assert summary["instructions"]["selected"] == summary["instructions"]["mapped"] - len(dropped)
    prompts = {json.loads(line)["prompt"][0]["content"] for line in out.read_text().splitlines()}
    text = truth.set_index("instruction_id")["instruction"]
    assert not {text[i] for i in dropped} & prompts
    kept = set(groups.loc[groups["is_kept"], "instruction_id"]) - set(contaminated["instruction_id"])
    assert {text[i] for i in kept} <= prompts
    # The default output names both drops.
    assert main([*argv[:4], "--drop-near-duplicates", "--quiet"]) == 0
    assert (run / "pairs" / "full-annotated-seed42-dedup.jsonl").exists()


@pytest.mark.slow
def test_a_rerun_map_refuses_the_old_neighbours(planted_run, tmp_path, caplog):
    run, _ = planted_run
    summary = json.loads((run / "neighbours" / "neighbours.json").read_text())
    stale = tmp_path / "stale"
    stale.mkdir()
    for name in ("near_duplicates.parquet", "contamination.parquet"):
        (stale / name).write_bytes((run / "neighbours" / name).read_bytes())
    (stale / "neighbours.json").write_text(json.dumps({**summary, "map_run_id": "another-run"}))
    argv = ["select", str(run), "--drop-contaminated", "--neighbours", str(stale), "--quiet"]
    assert main(argv) == 2
    assert "holds the neighbours of map run another-run" in caplog.text


@pytest.mark.slow
def test_the_python_api_finds_and_drops_the_same(planted_run, tmp_path):
    import admap

    run, _ = planted_run
    data_map = admap.open_run(run)
    found = data_map.neighbours(out=str(tmp_path / "again"), against=["mt_bench"])
    assert found.summary["contamination"]["against"] == {"mt_bench": 80}
    assert set(found.contamination["eval_set"]) == {"mt_bench"}
    expected = pd.read_parquet(run / "neighbours" / "near_duplicates.parquet")
    pd.testing.assert_frame_equal(found.near_duplicates, expected)
    pairs = data_map.select("full", drop_near_duplicates=True, out=str(tmp_path / "dedup.jsonl"), progress=False)
    assert len(set(pairs["instruction_id"])) == len(data_map.table) - (~expected["is_kept"]).sum()


def test_the_neighbours_folder_alone_is_refused(caplog, tmp_path):
    assert main(["select", str(tmp_path), "--neighbours", str(tmp_path), "--quiet"]) == 2
    assert "give --drop-near-duplicates or --drop-contaminated" in caplog.text
