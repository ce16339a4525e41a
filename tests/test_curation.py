"""Closing the loop: `admap select` with --include-ids, --exclude-ids and --drop-suspects-*, on a run with
planted label flips whose suspicion order is known by construction, and the pure filters in admap.curate."""

import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest

from admap import curate
from admap.cli import main
from admap.commands.select import SelectConfig, run_select, summary_path
from admap.errors import InputError
from admap.run_folder import ForeignDiagnosis, MapRun
from tests.runs import map_without_models

WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord"]
FILLER = ["kilo", "lima", "mike", "november", "oscar", "papa"]
N_MAPPED = 12
# Planted flips: in these instructions the partial answer is rated above the one equal to the proxy. The
# partial answer shares this many of the proxy's 6 words, so ROUGE-L scores it shared/6, and the fewer it
# shares, the more the scores contradict the label: question 2 is the most suspect pair, then 5, then 9.
PLANTED_SHARED_WORDS = {2: 1, 5: 3, 9: 5}
PAIRS_PER_INSTRUCTION = 3  # ratings 5, 3, 1: every pair of three responses differs


def planted_rows() -> list[dict]:
    """Twelve mapped instructions of three rated responses (the proxy itself, a partial answer, junk), three
    with the proxy and the partial answer's ratings swapped, and one with a single response (unmapped)."""
    rows = []
    for k in range(N_MAPPED):
        proxy = " ".join(f"{word}{k}" for word in WORDS)
        shared = PLANTED_SHARED_WORDS.get(k, 3)
        partial = " ".join([f"{word}{k}" for word in WORDS[:shared]] + [f"{word}{k}" for word in FILLER[shared:]])
        proxy_rating, partial_rating = (3.0, 5.0) if k in PLANTED_SHARED_WORDS else (5.0, 3.0)
        completions = [
            {"response": proxy, "fine-grained_score": proxy_rating},
            {"response": partial, "fine-grained_score": partial_rating},
            {"response": f"zulu{k} x y z", "fine-grained_score": 1.0},
        ]
        rows.append({"instruction": f"Question {k}?", "proxy": proxy, "completions": completions})
    rows.append(
        {
            "instruction": f"Question {N_MAPPED}?",
            "proxy": "lonely",
            "completions": [{"response": "lonely answer", "fine-grained_score": 4.0}],
        }
    )
    return rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted run, diagnosed; the diagnosis is never changed by a test (each writes its own outputs)."""
    run = map_without_models(planted_rows(), tmp_path_factory.mktemp("planted"))
    assert main(["diagnose", str(run), "--quiet"]) == 0
    return run


def ids_by_question(run) -> dict[int, str]:
    """Instruction id by question number."""
    table = pd.read_parquet(run / "map.parquet")
    return {int(text.split()[1].rstrip("?")): iid for text, iid in zip(table["instruction"], table["instruction_id"])}


def planted_pair(run, k: int) -> tuple[str, str, str]:
    """The planted flip of question ``k``: the partial answer chosen over the proxy's own text."""
    iid = ids_by_question(run)[k]
    responses = pd.read_parquet(run / "scores.parquet").set_index("response")
    proxy = " ".join(f"{word}{k}" for word in WORDS)
    partial = next(text for text in responses.index if text.startswith(f"{WORDS[0]}{k} ") and text != proxy)
    return iid, responses.loc[partial, "response_id"], responses.loc[proxy, "response_id"]


def read_pairs(path) -> list[tuple[str, str, str]]:
    return [
        (record["instruction_id"], record["chosen_id"], record["rejected_id"])
        for record in map(json.loads, path.read_text().splitlines())
    ]


def read_all_pairs(run) -> list[tuple[str, str, str]]:
    """Every pair of the run, as `admap map` wrote them (strategy full)."""
    return read_pairs(run / "pairs" / "full.jsonl")


def write_export(path, ids) -> None:
    """A file as the viewer's export button writes it: one {"instruction_id": ...} record per line."""
    path.write_text("".join(json.dumps({"instruction_id": i}) + "\n" for i in ids))


def select(run, tmp_path, *flags):
    """`admap select` through the CLI, into tmp_path; returns the pairs and the summary."""
    out = tmp_path / "subset.jsonl"
    assert main(["select", str(run), *flags, "--out", str(out), "--quiet"]) == 0
    return read_pairs(out), json.loads(summary_path(out).read_text())


# ---- the planted run, through `admap select`


def test_the_diagnosis_flags_exactly_the_planted_flips_in_order(planted):
    suspects = pd.read_parquet(planted / "diagnosis" / "suspects.parquet")
    flagged = suspects[suspects["is_suspect"]]
    assert [tuple(row) for row in flagged[["instruction_id", "chosen_id", "rejected_id"]].to_numpy()] == [
        planted_pair(planted, k) for k in (2, 5, 9)
    ]
    assert len(suspects) == N_MAPPED * PAIRS_PER_INSTRUCTION


def test_exclude_ids_leaves_them_out_of_the_aligned_region(planted, tmp_path, caplog):
    ids = ids_by_question(planted)
    regions = pd.read_parquet(planted / "map.parquet").set_index("instruction_id")["region"]
    high_mean = [i for i in regions.index if regions[i] == "high_mean"]
    excluded = [high_mean[0], next(i for i in regions.index if regions[i] == "low_mean"), ids[N_MAPPED]]
    export = tmp_path / "run-selection.jsonl"
    write_export(export, [*excluded, "not-an-instruction", excluded[0]])
    pairs, summary = select(planted, tmp_path, "--exclude-ids", str(export))
    # The default strategy, high_mean, sized against the pool: the region without the excluded one.
    assert {pair[0] for pair in pairs} == set(high_mean) - {excluded[0]}
    assert len(pairs) == (len(high_mean) - 1) * PAIRS_PER_INSTRUCTION
    assert summary["instructions"] == {
        "mapped": N_MAPPED,
        "after_include": N_MAPPED,
        "after_exclude": N_MAPPED - 2,
        "selected": len(high_mean) - 1,
        "selected_with_pairs": len(high_mean) - 1,
    }
    record = summary["exclude_ids"]
    assert (record["listed"], record["distinct"], record["mapped"]) == (5, 4, 2)
    assert (record["unknown_ids"], record["not_mapped_ids"]) == (["not-an-instruction"], [ids[N_MAPPED]])
    assert record["excluded_ids"] == [i for i in regions.index if i in excluded[:2]]
    assert record["sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert "1 of its 4 ids are not instructions of" in caplog.text and "not-an-instruction" in caplog.text
    assert "1 of its 4 ids are not on the map of" in caplog.text


def test_include_ids_with_full_keeps_exactly_them_and_counts_the_rest(planted, tmp_path):
    ids = ids_by_question(planted)
    listed = tmp_path / "keep.txt"
    listed.write_text(f"{ids[0]}\n\n  {ids[2]}  \n{ids[7]}\n{ids[N_MAPPED]}\nghost-1\nghost-2\n")
    pairs, summary = select(planted, tmp_path, "--strategy", "full", "--include-ids", str(listed))
    assert sorted({pair[0] for pair in pairs}) == sorted([ids[0], ids[2], ids[7]])
    assert len(pairs) == 3 * PAIRS_PER_INSTRUCTION
    assert summary["instructions"]["after_include"] == 3 and summary["pairs"]["selected"] == 9
    record = summary["include_ids"]
    assert (record["listed"], record["mapped"], record["not_mapped"], record["unknown"]) == (6, 3, 1, 2)
    assert record["unknown_ids"] == ["ghost-1", "ghost-2"]


def test_an_id_in_both_lists_is_left_out_and_the_fraction_is_of_the_pool(planted, tmp_path):
    ids = ids_by_question(planted)
    include, exclude = tmp_path / "include.csv", tmp_path / "exclude.parquet"
    pd.DataFrame({"instruction_id": [ids[k] for k in range(8)], "note": "x"}).to_csv(include, index=False)
    pd.DataFrame({"instruction_id": [ids[0], ids[1]]}).to_parquet(exclude)
    flags = ["--include-ids", str(include), "--exclude-ids", str(exclude)]
    pairs, summary = select(planted, tmp_path, "--strategy", "full", *flags)
    assert {pair[0] for pair in pairs} == {ids[k] for k in range(2, 8)}
    assert (summary["instructions"]["after_include"], summary["instructions"]["after_exclude"]) == (8, 6)
    # A strategy chooses from the pool, sized against it: half of 6, all of them from the pool.
    pairs, summary = select(planted, tmp_path, "--strategy", "random", "--fraction", "0.5", *flags)
    chosen = {pair[0] for pair in pairs}
    assert len(chosen) == 3 and chosen <= {ids[k] for k in range(2, 8)}


def test_drop_suspects_top_drops_the_best_ranked_pairs_not_their_instructions(planted, tmp_path):
    pairs, summary = select(planted, tmp_path, "--strategy", "full", "--drop-suspects-top", "2")
    assert len(pairs) == N_MAPPED * PAIRS_PER_INSTRUCTION - 2
    dropped = {planted_pair(planted, 2), planted_pair(planted, 5)}
    assert not dropped & set(pairs) and planted_pair(planted, 9) in pairs
    # The pair goes, its instruction stays with its other two pairs.
    ids = ids_by_question(planted)
    assert sum(pair[0] == ids[2] for pair in pairs) == PAIRS_PER_INSTRUCTION - 1
    record = summary["drop_suspects"]
    assert (record["top"], record["above"], record["flagged"], record["chosen"], record["dropped"]) == (
        2,
        None,
        3,
        2,
        2,
    )
    assert [(p["instruction_id"], p["chosen_id"], p["rejected_id"], p["rank"]) for p in record["dropped_pairs"]] == [
        (*planted_pair(planted, 2), 1),
        (*planted_pair(planted, 5), 2),
    ]
    assert all(p["in_subset"] for p in record["dropped_pairs"]) and record["dropped_in_subset"] == 2
    assert record["diagnosis_map_run_id"] == summary["map_run_id"] == MapRun.open(planted).run_id
    assert summary["pairs"] == {"of_pool": 36, "after_drop_suspects": 34, "selected": 34}
    assert summary["instructions"]["selected"] == N_MAPPED


def test_drop_suspects_above_a_threshold_and_with_top(planted, tmp_path):
    suspicion = pd.read_parquet(planted / "diagnosis" / "suspects.parquet").head(3)["suspicion_score"].to_numpy()
    between = float((suspicion[1] + suspicion[2]) / 2)
    pairs, summary = select(planted, tmp_path, "--strategy", "full", "--drop-suspects-above", f"{between}")
    assert {planted_pair(planted, k) for k in (2, 5)} == set(read_all_pairs(planted)) - set(pairs)
    # At or above: the third flip's own score drops it too; pairs the scores agree with never go.
    pairs, _ = select(planted, tmp_path, "--strategy", "full", "--drop-suspects-above", "-100")
    assert set(read_all_pairs(planted)) - set(pairs) == {planted_pair(planted, k) for k in (2, 5, 9)}
    pairs, summary = select(
        planted, tmp_path, "--strategy", "full", "--drop-suspects-above", f"{between}", "--drop-suspects-top", "1"
    )
    assert set(read_all_pairs(planted)) - set(pairs) == {planted_pair(planted, 2)}
    assert (summary["drop_suspects"]["above"], summary["drop_suspects"]["top"]) == (between, 1)


def test_a_dropped_suspect_outside_the_subset_is_recorded_as_such(planted, tmp_path):
    ids = ids_by_question(planted)
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(ids[5] + "\n")
    keep = tmp_path / "keep.txt"
    keep.write_text("".join(ids[k] + "\n" for k in (2, 3, 5, 9)))
    flags = ["--include-ids", str(keep), "--exclude-ids", str(exclude), "--drop-suspects-top", "3"]
    pairs, summary = select(planted, tmp_path, "--strategy", "random", "--fraction", "0.34", *flags)
    chosen = {pair[0] for pair in pairs}
    assert len(chosen) == 1  # round(0.34 * 3 in the pool)
    record = summary["drop_suspects"]
    # Question 5's flip left with its instruction (excluded): of the three chosen, two were in the pool.
    assert (record["chosen"], record["dropped"]) == (3, 2)
    assert {p["instruction_id"]: p["in_subset"] for p in record["dropped_pairs"]} == {
        ids[2]: ids[2] in chosen,
        ids[9]: ids[9] in chosen,
    }


def test_a_diagnosis_of_another_map_run_is_refused(planted, tmp_path, caplog):
    other = map_without_models(planted_rows(), tmp_path, name="other")
    assert main(["diagnose", str(other), "--quiet"]) == 0
    argv = ["select", str(planted), "--drop-suspects-top", "1", "--diagnosis", str(other / "diagnosis")]
    assert main([*argv, "--out", str(tmp_path / "x.jsonl"), "--quiet"]) == 2
    theirs, ours = MapRun.open(other).run_id, MapRun.open(planted).run_id
    assert f"is a diagnosis of map run {theirs}, not of {planted}'s run {ours}" in caplog.text
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(ForeignDiagnosis):
        MapRun.open(planted).diagnosis(other / "diagnosis")
    # The viewer reads the run's own diagnosis as before.
    assert MapRun.open(planted).suspects() is not None


def test_refusals_name_what_is_wrong(planted, tmp_path, caplog):
    ids = ids_by_question(planted)
    ghosts = tmp_path / "ghosts.txt"
    ghosts.write_text("ghost-1\nghost-2\n")
    with pytest.raises(ValueError, match=r"none of its 2 ids is an instruction of .*another run"):
        run_select(SelectConfig(run_dir=str(planted), include_ids=str(ghosts)))
    everything = tmp_path / "all.txt"
    everything.write_text("".join(ids[k] + "\n" for k in range(N_MAPPED)))
    with pytest.raises(ValueError, match=r"no mapped instruction is left .*12 mapped, 12 after the include list, 0"):
        run_select(SelectConfig(run_dir=str(planted), include_ids=str(everything), exclude_ids=str(everything)))
    with pytest.raises(ValueError, match="give --drop-suspects-top K or --drop-suspects-above X"):
        SelectConfig(run_dir="run", diagnosis="elsewhere")
    with pytest.raises(ValueError, match="pair_rule 'alignment_score' orders every pair by the scores"):
        SelectConfig(run_dir="run", pair_rule="alignment_score", drop_suspects_above=0.0)
    with pytest.raises(ValueError, match="drop_suspects_top must be >= 1, got 0"):
        SelectConfig(run_dir="run", drop_suspects_top=0)
    undiagnosed = map_without_models(planted_rows(), tmp_path, name="undiagnosed")
    assert main(["select", str(undiagnosed), "--drop-suspects-top", "1", "--quiet"]) == 2
    assert f"diagnosis.json is missing: run `admap diagnose {undiagnosed}` first" in caplog.text


def test_the_default_output_is_unique_per_configuration(planted, tmp_path):
    ids = ids_by_question(planted)
    first, same, other = tmp_path / "a" / "sel.jsonl", tmp_path / "b" / "sel.jsonl", tmp_path / "c.jsonl"
    for path, chosen in ((first, [0, 1]), (same, [0, 1]), (other, [0, 3])):
        path.parent.mkdir(exist_ok=True)
        write_export(path, [ids[k] for k in chosen])
    outs = [
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(first))),
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(same))),
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(other))),
        run_select(SelectConfig(run_dir=str(planted), include_ids=str(first))),
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(first), drop_suspects_top=2)),
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(first), drop_suspects_above=0.5)),
    ]
    digest = hashlib.sha256(first.read_bytes()).hexdigest()[:8]
    assert outs[0] == planted / "pairs" / f"high_mean-annotated-seed42-exclude{digest}.jsonl"
    assert outs[1] == outs[0]  # the same ids under another path: the same subset
    assert len(set(outs)) == 5
    assert outs[4].name == f"high_mean-annotated-seed42-exclude{digest}-drop-top2.jsonl"
    assert outs[5].name == f"high_mean-annotated-seed42-exclude{digest}-drop-above0.5.jsonl"
    for out in outs:
        assert summary_path(out).exists() and summary_path(out).name.endswith(".summary.json")


def test_a_plain_selection_writes_its_summary_too(planted, tmp_path):
    pairs, summary = select(planted, tmp_path)
    assert pairs == read_pairs(planted / "pairs" / "high_mean.jsonl")
    assert summary["include_ids"] is None and summary["exclude_ids"] is None and summary["drop_suspects"] is None
    assert summary["selection"]["strategy"] == "high_mean" and summary["pair_rule"] == "annotated"
    assert summary["command"].startswith("admap select ") and summary["admap_version"]
    assert summary["pairs_file"] == str(tmp_path / "subset.jsonl")


# ---- the filters, as pure functions


def small_map() -> pd.DataFrame:
    return pd.DataFrame({"instruction_id": ["a", "b", "c", "d", "e"], "is_mapped": [True, True, True, True, False]})


def test_match_ids_splits_mapped_unmapped_and_unknown():
    match = curate.match_ids(np.array(["x", "e", "c", "a"], dtype=object), small_map())
    assert (match.mapped.tolist(), match.unmapped.tolist(), match.unknown.tolist()) == (["c", "a"], ["e"], ["x"])


def test_instruction_pool_includes_then_excludes():
    pool = curate.instruction_pool(small_map(), include=np.array(["d", "b", "e", "c"]), exclude=np.array(["c", "z"]))
    assert pool.map_table["instruction_id"].tolist() == ["b", "d"]
    assert (pool.mapped, pool.after_include, pool.after_exclude, pool.excluded.tolist()) == (4, 3, 2, ["c"])
    whole = curate.instruction_pool(small_map())
    assert whole.map_table["instruction_id"].tolist() == ["a", "b", "c", "d"] and len(whole.excluded) == 0


def suspects_table() -> pd.DataFrame:
    """Five pairs ranked as `admap diagnose` ranks them; the last two are not flagged."""
    return pd.DataFrame(
        {
            "rank": [3, 1, 2, 4, 5],
            "instruction_id": ["b", "a", "a", "c", "c"],
            "chosen_id": ["b1", "a1", "a2", "c1", "c2"],
            "rejected_id": ["b2", "a2", "a3", "c2", "c3"],
            "suspicion_score": [0.5, 2.0, 1.0, -0.5, -1.0],
            "is_suspect": [True, True, True, False, False],
        }
    )


def test_chosen_suspects_by_rank_by_score_and_both():
    suspects = suspects_table()
    assert curate.chosen_suspects(suspects, top=2)["chosen_id"].tolist() == ["a1", "a2"]
    assert curate.chosen_suspects(suspects, above=1.0)["chosen_id"].tolist() == ["a1", "a2"]
    assert curate.chosen_suspects(suspects, top=1, above=0.6)["chosen_id"].tolist() == ["a1"]
    # Never a pair the scores agree with, however wide the limits.
    assert curate.chosen_suspects(suspects, top=100, above=-100)["chosen_id"].tolist() == ["a1", "a2", "b1"]
    with pytest.raises(ValueError, match="give top, above or both"):
        curate.chosen_suspects(suspects)
    with pytest.raises(ValueError, match=r"lacks columns \['is_suspect'\]"):
        curate.chosen_suspects(suspects.drop(columns="is_suspect"), top=1)


def test_drop_pairs_matches_the_pair_in_its_orientation():
    pairs = pd.DataFrame(
        {"instruction_id": ["a", "a", "b"], "chosen_id": ["a1", "a2", "b2"], "rejected_id": ["a2", "a3", "b1"]}
    )
    drop = curate.drop_pairs(pairs, suspects_table().head(3))
    assert drop.kept.values.tolist() == [["b", "b2", "b1"]]  # b1 over b2 was flagged, not b2 over b1
    assert drop.dropped["chosen_id"].tolist() == ["a1", "a2"]


def test_curated_pool_filters_instructions_then_pairs():
    map_table = small_map().assign(instruction_id=["a", "b", "c", "x", "e"])
    pairs = pd.DataFrame(
        {
            "instruction_id": ["a", "a", "a", "b", "c"],
            "chosen_id": ["a1", "a2", "a1", "b1", "c1"],
            "rejected_id": ["a2", "a3", "a3", "b2", "c2"],
        }
    )
    pool = curate.curated_pool(
        map_table, pairs, include=np.array(["a", "b", "e"]), exclude=np.array(["b"]), suspects=suspects_table(), top=3
    )
    assert pool.instructions.map_table["instruction_id"].tolist() == ["a"]
    # b1 over b2 was picked but b left with its instruction; a keeps the pair that was not flagged.
    assert pool.chosen_suspects["chosen_id"].tolist() == ["a1", "a2", "b1"]
    assert pool.dropped_pairs["chosen_id"].tolist() == ["a1", "a2"]
    assert pool.pairs.values.tolist() == [["a", "a1", "a3"]] and pool.pairs_of_pool == 3
    unfiltered = curate.curated_pool(map_table, pairs)
    assert unfiltered.pairs.equals(pairs) and unfiltered.dropped_pairs.empty
    with pytest.raises(ValueError, match="give the suspects table too"):
        curate.curated_pool(map_table, pairs, top=1)
    with pytest.raises(ValueError, match=r"no mapped instruction is left .*4 mapped, 1 after the include list, 0"):
        curate.curated_pool(map_table, pairs, include=np.array(["a"]), exclude=np.array(["a"]))


def test_read_id_file_formats(tmp_path):
    (tmp_path / "export.jsonl").write_text('{"instruction_id": "a"}\n\n{"instruction_id": "b", "x": 1}\n')
    (tmp_path / "plain").write_text("a\n b \n\na\n")
    pd.DataFrame({"instruction_id": ["0007", "b"]}).to_csv(tmp_path / "ids.csv", index=False)
    pd.DataFrame({"instruction_id": ["a"], "text": ["long"]}).to_parquet(tmp_path / "ids.parquet")
    assert curate.read_id_file(tmp_path / "export.jsonl").ids.tolist() == ["a", "b"]
    plain = curate.read_id_file(tmp_path / "plain")
    assert (plain.ids.tolist(), plain.listed) == (["a", "b"], 3)
    assert curate.read_id_file(tmp_path / "ids.csv").ids.tolist() == ["0007", "b"]  # text, leading zeros kept
    assert curate.read_id_file(tmp_path / "ids.parquet").ids.tolist() == ["a"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"instruction_id": "a"}\nnot json\n', "bad.jsonl, line 2: is not JSON"),
        ("bad.jsonl", '{"id": "a"}\n', "bad.jsonl, line 1, field 'instruction_id': missing"),
        (
            "bad.jsonl",
            '{"instruction_id": 7}\n',
            "bad.jsonl, line 1, field 'instruction_id': must be a string, got int",
        ),
        ("bad.csv", "id\na\n", "bad.csv, field 'instruction_id': no such column"),
        ("bad.csv", 'instruction_id\na\n""\n', "bad.csv, row 2, field 'instruction_id': is empty"),
    ],
)
def test_read_id_file_errors_name_file_row_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        curate.read_id_file(tmp_path / name)


def test_a_parquet_file_without_the_id_column_is_refused(tmp_path):
    pd.DataFrame({"id": ["a"]}).to_parquet(tmp_path / "ids.parquet")
    with pytest.raises(InputError, match="ids.parquet, field 'instruction_id': no such column"):
        curate.read_id_file(tmp_path / "ids.parquet")


def test_unknown_id_warnings_go_through_logging(planted, tmp_path, caplog):
    export = tmp_path / "ids.txt"
    export.write_text(ids_by_question(planted)[0] + "\nghost\n")
    with caplog.at_level(logging.WARNING):
        run_select(SelectConfig(run_dir=str(planted), exclude_ids=str(export), out=str(tmp_path / "o.jsonl")))
    assert [r.levelno for r in caplog.records if "ghost" in r.getMessage()] == [logging.WARNING]
