"""The proxy-free map (``self_similarity``): the authors' variance of the pairwise cosines among an
instruction's own responses, their mean as the y axis, and each response's mean cosine to the others."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from admap.cli import main
from admap.commands.map import MapConfig
from admap.inputs import demo_dataset_path
from admap.run_folder import MapRun
from admap.score.self_similarity import group_agreement


def unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_group_agreement_by_hand():
    vectors = unit([[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
    cosines = {(i, j): float(vectors[i] @ vectors[j]) for i, j in itertools.combinations(range(4), 2)}
    centrality, mean, variance = group_agreement(vectors)
    assert mean == pytest.approx(np.mean(list(cosines.values())))
    assert variance == pytest.approx(np.var(list(cosines.values())))
    for i in range(4):
        others = [c for pair, c in cosines.items() if i in pair]
        assert centrality[i] == pytest.approx(np.mean(others))
    # The mean of the responses' centralities is the mean pairwise cosine: the two y values agree.
    assert centrality.mean() == pytest.approx(mean)


def test_one_response_has_no_pair():
    centrality, mean, variance = group_agreement(unit([[1, 2, 3]]))
    assert np.isnan(centrality).all() and np.isnan(mean) and np.isnan(variance)


def test_length_debias_is_refused_for_a_scorer_that_draws_its_own_axes():
    with pytest.raises(ValueError, match="defines the map's axes itself"):
        MapConfig(scorer="self_similarity", length_debias=True)


@pytest.mark.slow
def test_admap_map_self_similarity_equals_the_authors_computation(tmp_path, minilm):
    out = tmp_path / "run"
    assert main(["map", "--scorer", "self_similarity", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    run = MapRun.open(out)
    assert run.summary["scorer"]["label"] == "self_similarity (all-MiniLM-L6-v2)"
    assert run.summary["proxies"] == {} and not (out / "proxies.jsonl").exists()
    map_table = run.map_table().set_index("instruction_id")
    scores = run.scores()
    # The authors' response_variance_calculation: each pair of completions encoded, its cosine, np.var.
    rows = [json.loads(line) for line in open(demo_dataset_path(), encoding="utf-8")]
    assert len(rows) == len(map_table) == map_table["is_mapped"].sum()
    for instruction_id, row in zip(map_table.index, rows):
        texts = [completion["response"] for completion in row["completions"]]
        similarities = []
        for pair in itertools.combinations(texts, 2):
            a, b = minilm.encode(list(pair)).astype(np.float64)
            similarities.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert map_table.loc[instruction_id, "score_variance"] == pytest.approx(np.var(similarities), abs=1e-6)
        assert map_table.loc[instruction_id, "mean_score"] == pytest.approx(np.mean(similarities), abs=1e-5)
        own = scores[scores["instruction_id"] == instruction_id]["alignment_score"]
        assert own.mean() == pytest.approx(np.mean(similarities), abs=1e-5)
    counts = pd.Series(run.summary["regions"])
    assert counts[["high_mean", "low_mean", "high_variance"]].tolist() == [16, 16, 16]


@pytest.mark.slow
def test_pair_datasets_are_flagged_their_variance_is_zero(tmp_path, hh_rlhf_path, caplog):
    out = tmp_path / "hh"
    argv = ["map", str(hh_rlhf_path), "--limit", "20", "--scorer", "self_similarity", "--device", "cpu"]
    assert main([*argv, "--no-view", "--out", str(out)]) == 0
    run = MapRun.open(out)
    assert run.summary["scorer"]["instructions_with_one_pair"] == 20
    assert (run.map_table()["score_variance"] == 0).all()
    assert "have two responses, one pair: their variance is 0" in caplog.text


def test_instruction_chunks_cover_every_instruction_within_the_limit():
    from admap.score.self_similarity import instruction_chunks

    members = [np.arange(n) for n in (4, 4, 2, 7, 1, 3)]
    chunks = list(instruction_chunks(members, 8))
    assert [g for chunk in chunks for g in chunk] == list(range(6))
    assert chunks == [[0, 1], [2], [3, 4], [5]]
    assert all(sum(len(members[g]) for g in chunk) <= 8 for chunk in chunks)
    assert list(instruction_chunks(members, 3)) == [[0], [1], [2], [3], [4], [5]]
