import json

import numpy as np
import pandas as pd
import pytest

from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, UNMAPPED, assign_regions, instruction_statistics
from admap.select import preference_pairs, random_instruction_ids, trl_records


def _random_scores(n_instructions, per_instruction, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"i{k:04d}" for k in range(n_instructions)], per_instruction)
    return ids, rng.random(len(ids))


def test_statistics_match_numpy():
    ids, scores = _random_scores(50, 4)
    stats = instruction_statistics(ids, scores).set_index("instruction_id")
    for instruction_id in ["i0000", "i0017", "i0049"]:
        own = scores[ids == instruction_id]
        row = stats.loc[instruction_id]
        assert row["n_responses"] == 4 and row["n_scored"] == 4
        assert row["mean_score"] == pytest.approx(np.mean(own))
        assert row["score_variance"] == pytest.approx(np.var(own))  # population variance, as the paper
        assert row["score_std"] == pytest.approx(np.std(own))


def test_unscored_and_single_response_instructions_stay_marked():
    ids = np.array(["a", "a", "b", "c", "c", "c"])
    scores = np.array([0.5, 0.7, 0.9, 0.1, np.nan, np.nan])
    stats = instruction_statistics(ids, scores, all_instruction_ids=np.array(["a", "b", "c", "d"]))
    stats = stats.set_index("instruction_id")
    assert list(stats.index) == ["a", "b", "c", "d"]
    assert stats["is_mapped"].to_dict() == {"a": True, "b": False, "c": False, "d": False}
    assert stats.loc["c", "n_responses"] == 3 and stats.loc["c", "n_scored"] == 1
    assert stats.loc["d", "n_responses"] == 0
    assert np.isnan(stats.loc["b", "mean_score"])
    regions, _ = assign_regions(stats.reset_index())
    # One mapped instruction: 2 * 1 // 3 == 0 low-variance places, so it is high_variance.
    assert list(regions) == [HIGH_VARIANCE, UNMAPPED, UNMAPPED, UNMAPPED]


@pytest.mark.parametrize("n", [3, 10, 99, 100, 101, 6526 * 3 + 1])
def test_paper_region_sizes(n):
    ids, scores = _random_scores(n, 4, seed=n)
    stats = instruction_statistics(ids, scores)
    regions, thresholds = assign_regions(stats)
    counts = regions.value_counts()
    low_variance = 2 * n // 3
    assert counts.get(HIGH_VARIANCE, 0) == n - low_variance
    assert counts.get(LOW_MEAN, 0) == low_variance // 2
    assert counts.get(HIGH_MEAN, 0) == low_variance - low_variance // 2
    high_variance = stats["score_variance"][regions == HIGH_VARIANCE]
    rest = stats[regions != HIGH_VARIANCE]
    assert high_variance.min() >= rest["score_variance"].max()
    high_mean = rest["mean_score"][regions[rest.index] == HIGH_MEAN]
    assert high_mean.min() >= rest["mean_score"][regions[rest.index] == LOW_MEAN].max()
    assert thresholds.variance == pytest.approx(high_variance.min())
    assert thresholds.mean == pytest.approx(high_mean.min())


def test_ties_are_broken_by_instruction_id_not_input_order():
    # Every instruction has the same statistics: only the id can decide.
    stats = pd.DataFrame(
        {
            "instruction_id": [f"q{k}" for k in range(9)],
            "mean_score": 0.5,
            "score_variance": 0.01,
            "n_scored": 4,
            "is_mapped": True,
        }
    )
    regions, _ = assign_regions(stats)
    shuffled = stats.sample(frac=1.0, random_state=3).reset_index(drop=True)
    regions_shuffled, _ = assign_regions(shuffled)
    by_id = dict(zip(stats["instruction_id"], regions))
    assert by_id == dict(zip(shuffled["instruction_id"], regions_shuffled))
    assert [by_id[f"q{k}"] for k in range(9)] == [LOW_MEAN] * 3 + [HIGH_MEAN] * 3 + [HIGH_VARIANCE] * 3


def test_quantile_and_absolute_thresholds():
    ids, scores = _random_scores(300, 4, seed=7)
    stats = instruction_statistics(ids, scores)
    regions, thresholds = assign_regions(stats, method="absolute", variance_threshold=0.08, mean_threshold=0.5)
    assert ((stats["score_variance"] > 0.08) == (regions == HIGH_VARIANCE)).all()
    rest = regions != HIGH_VARIANCE
    assert ((stats["mean_score"][rest] >= 0.5) == (regions[rest] == HIGH_MEAN)).all()
    regions_q, thresholds_q = assign_regions(stats, method="quantile", variance_quantile=0.5, mean_quantile=0.5)
    assert thresholds_q.variance == pytest.approx(np.quantile(stats["score_variance"], 0.5))
    assert abs((regions_q == HIGH_VARIANCE).sum() - 150) <= 1
    with pytest.raises(ValueError, match="variance_threshold"):
        assign_regions(stats, method="absolute")
    with pytest.raises(ValueError, match="method"):
        assign_regions(stats, method="thirds")


def _responses(ratings, scores=None):
    rows = []
    for instruction, values in ratings.items():
        for k, rating in enumerate(values):
            rows.append({"instruction_id": instruction, "response_id": f"{instruction}-{k}", "rating": rating})
    frame = pd.DataFrame(rows)
    if scores is not None:
        frame["alignment_score"] = scores
    return frame


def test_annotated_rule_takes_every_unequal_pair_higher_chosen():
    responses = _responses({"a": [5.0, 3.0, 3.0, 1.0], "b": [2.0, 2.0]})
    pairs = preference_pairs(responses)
    got = set(map(tuple, pairs[["chosen_id", "rejected_id"]].to_numpy()))
    # 6 pairs from 4 responses, minus the tie (a-1, a-2); b's only pair is a tie.
    assert got == {("a-0", "a-1"), ("a-0", "a-2"), ("a-0", "a-3"), ("a-1", "a-3"), ("a-2", "a-3")}


def test_annotated_rule_prefers_the_datasets_own_pairs():
    responses = _responses({"a": [np.nan, np.nan, np.nan]})
    annotated = pd.DataFrame(
        {"instruction_id": ["a", "a"], "chosen_id": ["a-2", "a-0"], "rejected_id": ["a-1", "a-1"], "source_row": [1, 2]}
    )
    pairs = preference_pairs(responses, annotated=annotated)
    assert pairs[["chosen_id", "rejected_id"]].values.tolist() == [["a-2", "a-1"], ["a-0", "a-1"]]
    with pytest.raises(ValueError, match="alignment_score"):
        preference_pairs(responses)


def test_best_vs_random_and_alignment_score_rules():
    responses = _responses({"a": [5.0, 3.0, 1.0, 5.0], "b": [4.0, 4.0]}, scores=[0.9, 0.2, 0.4, 0.3, 0.5, 0.5])
    best = preference_pairs(responses, rule="best_vs_random", seed=1)
    assert len(best) == 1 and best.iloc[0]["chosen_id"] == "a-0" and best.iloc[0]["rejected_id"] in {"a-1", "a-2"}
    by_score = preference_pairs(responses, rule="alignment_score")
    assert len(by_score) == 6  # every pair of a; b's scores tie
    assert ("a-2", "a-1") in set(map(tuple, by_score[["chosen_id", "rejected_id"]].to_numpy()))


def test_random_subset_is_exact_and_seeded():
    ids = np.array([f"i{k}" for k in range(100)])
    first = random_instruction_ids(ids, 33, seed=42)
    assert len(first) == 33 and len(set(first)) == 33
    assert (first == random_instruction_ids(ids, 33, seed=42)).all()
    assert set(first) != set(random_instruction_ids(ids, 33, seed=43))
    with pytest.raises(ValueError):
        random_instruction_ids(ids, 101)


def test_trl_records_are_conversational():
    instructions = pd.DataFrame(
        {
            "instruction_id": ["a"],
            "prompt_messages": [json.dumps([{"role": "user", "content": "Say hi"}])],
        }
    )
    responses = _responses({"a": [2.0, 1.0]})
    responses["response"] = ["Hi!", "No."]
    records = trl_records(preference_pairs(responses), instructions, responses)
    assert records == [
        {
            "prompt": [{"role": "user", "content": "Say hi"}],
            "chosen": [{"role": "assistant", "content": "Hi!"}],
            "rejected": [{"role": "assistant", "content": "No."}],
            "instruction_id": "a",
            "chosen_id": "a-0",
            "rejected_id": "a-1",
        }
    ]


@pytest.mark.parametrize("n_mapped", [0, 1, 300])
def test_plot_writes_a_png_for_any_map(tmp_path, n_mapped):
    import matplotlib.image

    from admap.plot import plot_map

    ids, scores = _random_scores(n_mapped + 2, 4, seed=1)
    scores[-8:] = np.nan  # two unscored instructions stay unmapped
    stats = instruction_statistics(ids, scores)
    regions, thresholds = assign_regions(stats)
    stats["region"] = regions
    path = plot_map(stats, thresholds, tmp_path / "map.png", title="t")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 500 and image.shape[1] > 500
    assert (stats["region"] == UNMAPPED).sum() == 2
