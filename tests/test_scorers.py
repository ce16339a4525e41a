import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from admap.debias import length_residuals
from admap.score.annotation import AnnotationScorer, pair_counts
from admap.score.rouge import RougeLScorer, lcs_length, rouge_l_f1, tokenize


def _lcs_by_table(first, second):
    table = [[0] * (len(second) + 1) for _ in range(len(first) + 1)]
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            table[i + 1][j + 1] = table[i][j] + 1 if a == b else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        first = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        second = [rng.choice("abcdef") for _ in range(rng.randint(0, 40))]
        assert lcs_length(first, second) == _lcs_by_table(first, second)


def test_rouge_l_f1_by_hand():
    # reference "the cat sat on the mat" (6), candidate "the cat lay on a mat" (6): LCS the cat on mat = 4.
    assert rouge_l_f1("The cat lay on a mat.", "the cat sat on the mat") == pytest.approx(4 / 6)
    assert rouge_l_f1("entirely different words", "the cat sat") == 0.0
    assert rouge_l_f1("", "the cat") == 0.0
    assert tokenize("Don't STOP-me now!") == ["don", "t", "stop", "me", "now"]


def test_rouge_scorer_leaves_responses_without_proxy_unscored():
    instructions = pd.DataFrame({"instruction_id": ["a", "b"], "proxy_response": ["the cat sat on the mat", None]})
    responses = pd.DataFrame({"instruction_id": ["a", "a", "b"], "response": ["the cat sat on the mat", "dogs", "x"]})
    scores = RougeLScorer().score(instructions, responses)
    assert scores[0] == pytest.approx(1.0) and scores[1] == 0.0 and math.isnan(scores[2])


def test_annotation_scorer_uses_ratings_then_pair_win_rates():
    responses = pd.DataFrame(
        {
            "instruction_id": ["a", "a", "b", "b", "b"],
            "response_id": ["a-0", "a-1", "b-0", "b-1", "b-2"],
            "rating": [4.0, 2.0, np.nan, np.nan, np.nan],
        }
    )
    preferences = pd.DataFrame(
        {"instruction_id": ["b", "b"], "chosen_id": ["b-0", "b-0"], "rejected_id": ["b-1", "b-2"]}
    )
    responses[["pair_wins", "pair_losses"]] = pair_counts(responses, preferences)
    assert responses["pair_wins"].tolist() == [0, 0, 2, 0, 0]
    scores = AnnotationScorer().score(pd.DataFrame(), responses)
    np.testing.assert_array_equal(scores, [4.0, 2.0, 1.0, 0.0, 0.0])


def test_length_residuals_remove_a_planted_length_effect():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 3000, size=2000)
    quality = rng.normal(size=2000)
    scores = 0.5 + 0.1 * quality + 0.05 * np.log1p(lengths)
    scores[:10] = np.nan
    adjusted, fit = length_residuals(scores, lengths)
    assert fit.slope == pytest.approx(0.05, abs=0.01)
    assert fit.spearman_before > 0.3 and abs(fit.spearman_after) < 0.05
    assert np.isnan(adjusted[:10]).all()
    # What is left is the planted quality, on the score's own scale.
    assert np.corrcoef(adjusted[10:], quality[10:])[0, 1] > 0.99
    assert abs(np.nanmean(adjusted) - np.nanmean(scores)) < 1e-6
    with pytest.raises(ValueError):
        length_residuals(np.array([0.1, np.nan]), np.array([10, 20]))


@pytest.mark.slow
def test_annotation_and_rouge_maps_on_hh_rlhf_with_length_debias(tmp_path, hh_rlhf_path):
    from admap.cli import main

    out = tmp_path / "annotation"
    assert (
        main(
            [
                "map",
                str(hh_rlhf_path),
                "--limit",
                "200",
                "--skip-invalid",
                "--scorer",
                "annotation",
                "--length-debias",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    # The annotation needs no proxy: none is generated, none is written.
    assert summary["proxies"] == {} and summary["generation"] is None and not (out / "proxies.jsonl").exists()
    scores = pd.read_parquet(out / "scores.parquet")
    # HH-RLHF pairs: every response won or lost its one comparison.
    assert set(scores["alignment_score_raw"].dropna().unique()) <= {0.0, 1.0}
    debias = summary["length_debias"]
    assert debias["n"] == len(scores)
    assert 0 <= debias["fraction_moved"] <= 1
    assert debias["instructions_moved"] == sum(debias["moves"].values())
