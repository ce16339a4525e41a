"""The map and select stages at scale: the vectorized statistics, regions and pairs give exactly what
the straightforward implementations they replaced gave (kept below as the reference), and the
benchmark of the stage measures sane numbers."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from admap.datamap import (
    HIGH_MEAN,
    HIGH_VARIANCE,
    LOW_MEAN,
    UNMAPPED,
    assign_regions,
    instruction_codes,
    instruction_statistics,
    region_counts,
    stable_order,
)
from admap.select import PAIR_COLUMNS, preference_pairs, rows_of_instructions
from admap.timing.map_stage import map_stage, measure_map_stage, synthetic_responses

# The reference: admap.datamap and admap.select as they were before they were vectorized.


def reference_statistics(instruction_ids, scores, *, all_instruction_ids=None, min_responses=2):
    frame = pd.DataFrame({"instruction_id": instruction_ids, "score": np.asarray(scores, dtype=np.float64)})
    grouped = frame.groupby("instruction_id", sort=False)["score"]
    stats = pd.DataFrame(
        {
            "n_responses": grouped.size(),
            "n_scored": grouped.count(),
            "mean_score": grouped.mean(),
            "score_variance": grouped.var(ddof=0),
        }
    )
    if all_instruction_ids is not None:
        stats = stats.reindex(pd.Index(all_instruction_ids, name="instruction_id"))
        stats[["n_responses", "n_scored"]] = stats[["n_responses", "n_scored"]].fillna(0)
    stats = stats.astype({"n_responses": "int64", "n_scored": "int64"})
    stats["score_std"] = np.sqrt(stats["score_variance"])
    stats["is_mapped"] = stats["n_scored"] >= min_responses
    stats.loc[~stats["is_mapped"], ["mean_score", "score_variance", "score_std"]] = np.nan
    return stats.reset_index()


def reference_regions(stats, *, method="paper", variance_quantile=2 / 3, mean_quantile=0.5, thresholds=(None, None)):
    regions = pd.Series(UNMAPPED, index=stats.index, dtype=object)
    mapped = stats[stats["is_mapped"]]
    ids = mapped["instruction_id"].astype(str).to_numpy()
    variance = mapped["score_variance"].to_numpy()
    mean = mapped["mean_score"].to_numpy()
    n = len(mapped)
    if n == 0:
        return regions, (float("nan"), float("nan"))
    if method == "paper":
        by_variance = np.lexsort((ids, variance))
        n_low_variance = 2 * n // 3
        high_variance = by_variance[n_low_variance:]
        low_variance = by_variance[:n_low_variance]
        by_mean = low_variance[np.lexsort((ids[low_variance], mean[low_variance]))]
        n_low_mean = len(by_mean) // 2
        labels = np.empty(n, dtype=object)
        labels[high_variance] = HIGH_VARIANCE
        labels[by_mean[:n_low_mean]] = LOW_MEAN
        labels[by_mean[n_low_mean:]] = HIGH_MEAN
        cuts = (
            float(variance[high_variance].min()) if len(high_variance) else float("inf"),
            float(mean[by_mean[n_low_mean:]].min()) if len(by_mean) > n_low_mean else float("inf"),
        )
    else:
        if method == "quantile":
            variance_cut = float(np.quantile(variance, variance_quantile))
            rest = variance <= variance_cut
            mean_cut = float(np.quantile(mean[rest], mean_quantile)) if rest.any() else float("inf")
        else:
            variance_cut, mean_cut = thresholds
        labels = np.where(variance > variance_cut, HIGH_VARIANCE, np.where(mean >= mean_cut, HIGH_MEAN, LOW_MEAN))
        cuts = (variance_cut, mean_cut)
    regions.loc[mapped.index] = labels
    return regions, cuts


def reference_ordered_pairs(responses, value_column):
    rows = []
    rated = responses.dropna(subset=[value_column])
    for instruction_id, group in rated.groupby("instruction_id", sort=False):
        ids, values = group["response_id"].to_numpy(), group[value_column].to_numpy()
        for a, b in combinations(range(len(ids)), 2):
            if values[a] == values[b]:
                continue
            winner, loser = (a, b) if values[a] > values[b] else (b, a)
            rows.append((instruction_id, ids[winner], ids[loser]))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


# Random data: unsorted ids, 1 to 6 responses each, tied scores and ratings, missing ratings; missing
# scores for three seeds in four; for two seeds in three, instructions whose responses are interleaved
# with others'.


def random_responses(seed, n_instructions=300):
    rng = np.random.default_rng(seed)
    ids = np.array([f"q{k:04d}" for k in rng.permutation(n_instructions)], dtype=object)
    instruction_ids = np.repeat(ids, rng.integers(1, 7, n_instructions))
    if seed % 3:  # some instructions' responses come in several runs, and out of order
        moved = rng.random(len(instruction_ids)) < 0.3
        instruction_ids[moved] = rng.permutation(instruction_ids[moved])
    n = len(instruction_ids)
    # Few distinct scores, so that means and variances tie across instructions.
    scores = rng.choice([0.1, 0.2, 0.25, 0.5, 0.7], size=n) if seed % 2 else rng.random(n)
    if seed % 4:  # without missing scores, pandas sums sorted groups another way (see below)
        scores[rng.random(n) < 0.15] = np.nan
    ratings = rng.integers(1, 6, n).astype(float)
    ratings[rng.random(n) < 0.15] = np.nan
    return pd.DataFrame(
        {
            "instruction_id": instruction_ids,
            "response_id": [f"r{k}" for k in rng.permutation(n)],
            "alignment_score": scores,
            "rating": ratings,
        }
    )


def with_extra_and_missing_ids(ids, seed):
    """The instructions table's ids: most of the responses' ids, some without responses, shuffled."""
    rng = np.random.default_rng(seed)
    unique = pd.unique(ids)
    kept = unique[rng.random(len(unique)) < 0.9]
    extras = np.array([f"x{k}" for k in range(20)], dtype=object)
    return rng.permutation(np.concatenate([kept, extras]))


ID_FORMS = {
    "object": lambda ids: np.asarray(ids, dtype=object),
    "str_series": lambda ids: pd.Series(ids, dtype="str"),
    "unicode": lambda ids: np.asarray(ids, dtype=str),
}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("form", sorted(ID_FORMS))
@pytest.mark.parametrize("table", ["none", "in_response_order", "reordered_with_extras"])
def test_statistics_and_regions_equal_the_reference(seed, form, table):
    responses = random_responses(seed)
    ids, scores = responses["instruction_id"].to_numpy(), responses["alignment_score"].to_numpy()
    all_ids = {
        "none": None,
        "in_response_order": pd.unique(ids),
        "reordered_with_extras": with_extra_and_missing_ids(ids, seed),
    }[table]
    stats = instruction_statistics(ID_FORMS[form](ids), scores, all_instruction_ids=all_ids)
    expected = reference_statistics(ids, scores, all_instruction_ids=all_ids)
    # The same pandas kernels over the same values in the same order: equal to the last bit.
    pd.testing.assert_frame_equal(stats, expected, check_exact=True)

    for method, options in [
        ("paper", {}),
        ("quantile", {"variance_quantile": 0.6, "mean_quantile": 0.4}),
        ("absolute", {"variance_threshold": 0.02, "mean_threshold": 0.3}),
    ]:
        regions, thresholds = assign_regions(stats, method=method, **options)
        cuts = (options.get("variance_threshold"), options.get("mean_threshold"))
        expected_regions, expected_cuts = reference_regions(
            expected, method=method, **{k: v for k, v in options.items() if k.endswith("quantile")}, thresholds=cuts
        )
        pd.testing.assert_series_equal(regions, expected_regions)
        assert (thresholds.variance, thresholds.mean) == expected_cuts


def test_statistics_drop_rows_without_an_instruction_id_and_keep_duplicate_table_ids():
    ids = np.array(["b", None, "a", "b", np.nan, "a", pd.NA, pd.NA, "c"], dtype=object)
    scores = np.array([0.5, 0.1, 0.2, np.nan, 0.9, 0.4, 0.6, 0.7, 0.3])
    all_ids = np.array(["c", "a", "z", "a", "b"], dtype=object)
    for all_instruction_ids in (None, all_ids):
        stats = instruction_statistics(ids, scores, all_instruction_ids=all_instruction_ids, min_responses=1)
        expected = reference_statistics(ids, scores, all_instruction_ids=all_instruction_ids, min_responses=1)
        pd.testing.assert_frame_equal(stats, expected, check_exact=True)
        pd.testing.assert_series_equal(assign_regions(stats)[0], reference_regions(expected)[0])


def test_rows_without_an_instruction_id_leave_the_means_bit_for_bit():
    # pandas sums a groupby's sorted groups with ufunc.reduceat and unsorted ones with a Kahan sum; rows
    # without an id in the middle make the groups unsorted, and must keep doing so.
    rng = np.random.default_rng(0)
    ids = np.repeat(np.array([f"q{k:03d}" for k in range(200)], dtype=object), 6)
    ids[rng.choice(len(ids), 20, replace=False)] = None
    scores = rng.random(len(ids)) * 10.0 ** rng.integers(-3, 4, len(ids))
    stats = instruction_statistics(ids, scores)
    pd.testing.assert_frame_equal(stats, reference_statistics(ids, scores), check_exact=True)


def test_every_statistic_tied_is_split_by_instruction_id():
    ids = np.array([f"q{k}" for k in np.random.default_rng(0).permutation(90)], dtype=object).repeat(2)
    stats = instruction_statistics(ids, np.tile([0.25, 0.75], 90))
    regions, _ = assign_regions(stats)
    pd.testing.assert_series_equal(regions, reference_regions(reference_statistics(ids, np.tile([0.25, 0.75], 90)))[0])


@pytest.mark.parametrize("seed", range(10))
def test_stable_order_is_lexsort_by_value_then_id(seed):
    rng = np.random.default_rng(seed)
    n = 500
    values = rng.choice([0.0, -0.0, 0.5, 1.5, np.nan, np.inf], size=n) if seed % 2 else rng.random(n)
    ids = np.array([f"q{k}" for k in rng.integers(0, 200, n)], dtype=object)  # duplicate ids tie too
    expected = np.lexsort((ids, values))
    np.testing.assert_array_equal(stable_order(values, ids), expected)
    np.testing.assert_array_equal(stable_order(values, pd.array(ids, dtype="str")), expected)
    whole_numbers = rng.integers(0, 5, n)
    np.testing.assert_array_equal(stable_order(whole_numbers, ids), np.lexsort((ids, whole_numbers)))


@pytest.mark.parametrize("form", sorted(ID_FORMS))
def test_instruction_codes_are_factorize(form):
    ids = random_responses(3)["instruction_id"].to_numpy()
    codes, unique_ids = instruction_codes(ID_FORMS[form](ids))
    expected_codes, expected_unique = pd.factorize(ids)
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(unique_ids) == list(expected_unique)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rule, column", [("annotated", "rating"), ("alignment_score", "alignment_score")])
def test_pairs_equal_the_reference(seed, rule, column):
    responses = random_responses(seed)
    if seed % 4 == 3:
        responses["response_id"] = np.arange(len(responses))[::-1]  # integer ids keep their dtype
    if seed % 4 == 2:
        responses.index = responses.index * 7 + 3  # pairs never depend on the frame's index
    pairs = preference_pairs(responses, rule=rule)
    pd.testing.assert_frame_equal(pairs, reference_ordered_pairs(responses, column))


def test_pairs_of_other_id_dtypes_and_no_pairs_equal_the_reference():
    responses = random_responses(5, 40)
    as_objects = responses.astype({"instruction_id": object, "response_id": object})
    as_categories = responses.astype({"instruction_id": "category"})
    all_tied = responses.assign(rating=3.0)
    for frame in (as_objects, as_categories, all_tied):
        pd.testing.assert_frame_equal(preference_pairs(frame), reference_ordered_pairs(frame, "rating"))


def test_rows_of_instructions_is_isin():
    responses = random_responses(2)
    responses.loc[[3, 10], "instruction_id"] = None
    wanted = responses["instruction_id"].dropna().unique()[::3]
    selected = rows_of_instructions(responses, wanted)
    pd.testing.assert_frame_equal(selected, responses[responses["instruction_id"].isin(wanted)])
    assert rows_of_instructions(responses, []).empty


def test_map_stage_equals_the_reference_stage():
    responses = synthetic_responses(3000, seed=4)
    instruction_ids = responses["instruction_id"].drop_duplicates()
    counts = map_stage(responses, instruction_ids, seed=4)
    stats = reference_statistics(
        responses["instruction_id"].to_numpy(),
        responses["alignment_score"].to_numpy(),
        all_instruction_ids=instruction_ids,
    )
    regions, _ = reference_regions(stats)
    selected = stats.loc[regions == HIGH_MEAN, "instruction_id"]
    pairs = reference_ordered_pairs(responses[responses["instruction_id"].isin(selected)], "rating")
    assert counts == {"regions": region_counts(regions), "selected": len(selected), "pairs": len(pairs)}


def test_synthetic_responses_look_like_loaded_ones():
    responses = synthetic_responses(50, responses_per_instruction=3, seed=1)
    assert len(responses) == 150 and responses["instruction_id"].nunique() == 50
    assert responses["instruction_id"].iloc[0] == "i0000000" and responses["response_id"].iloc[4] == "i0000001-1"
    assert responses["response_id"].is_unique
    assert responses["alignment_score"].dtype == np.float32
    assert set(responses["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.corrcoef(responses["alignment_score"], responses["rating"])[0, 1] > 0.5


def test_measure_map_stage_reports_sane_numbers():
    result = measure_map_stage(20_000, seed=0)
    assert result["instructions"] == 20_000 and result["responses"] == 80_000
    assert 0 < result["seconds"] < 30
    assert 0 < result["data_rss_bytes"] <= result["peak_rss_bytes"] < 4 * 2**30
    assert result["peak_rss_covers"] in ("map_stage", "whole process")
    assert sum(result["regions"].values()) == 20_000 and result["regions"]["unmapped"] == 0
    assert result["selected"] == result["regions"][HIGH_MEAN]
    assert 0 < result["pairs"] <= 6 * result["selected"]
