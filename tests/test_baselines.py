"""Selection strategies on real, model-free `admap map` runs of the demo set and of HH-RLHF."""

import gzip
import json
from dataclasses import replace
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from admap.commands.map import MAP_STRATEGIES, map_subset_ids
from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGIONS, assign_regions
from admap.run_folder import MapRun
from admap.select import preference_pairs
from admap_baselines import STRATEGIES, SelectionInputs, select_instructions, subset_size
from admap_baselines.ambiguous import pair_variability
from tests.runs import map_without_models

SIZED = [
    "random",
    HIGH_MEAN,
    LOW_MEAN,
    HIGH_VARIANCE,
    "annotation_margin",
    "score_margin",
    "reward_margin",
    "longest",
    "ambiguous",
]
FRACTIONS = [None, 0.1, 0.25, 0.5]


@STRATEGIES.register("test_baselines_one_too_few")
class OneTooFew:
    """A broken strategy: one instruction short of the size."""

    name = "test_baselines_one_too_few"

    def select(self, inputs, *, size, seed):
        return inputs.candidates["instruction_id"].to_numpy()[: size - 1]


def _dynamics(pairs, *, epochs=3, seed=0):
    """Per-pair margins over epochs, drifting at a pair-specific speed, in pair_margins.parquet's shape."""
    rng = np.random.default_rng(seed)
    speed = rng.normal(size=len(pairs))
    noise = rng.normal(size=(epochs, len(pairs)))
    return pd.concat(
        [pairs.assign(epoch=epoch, margin=speed * epoch + noise[epoch]) for epoch in range(epochs)],
        ignore_index=True,
    )


def _inputs(run):
    """SelectionInputs of a finished run, with its own pair rule and synthetic training dynamics."""
    map_run = MapRun.open(run)
    responses, map_table, annotated = map_run.scores(), map_run.map_table(), map_run.preferences()
    config = map_run.summary["config"]
    pairs = preference_pairs(responses, rule=config["pair_rule"], annotated=annotated, seed=config["seed"])
    return SelectionInputs(map_table, responses, pairs, config["scorer"], _dynamics(pairs))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The shipped demo set (48 instructions × 4 rated completions) scored by ROUGE-L against its
    best-rated completion, plus two single-completion instructions that stay unmapped."""
    text = resources.files("admap.demo").joinpath("demo_preferences.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    rows += [{"instruction": f"Unmapped question {k}?", "completions": [rows[k]["completions"][0]]} for k in range(2)]
    for row in rows:
        row["proxy"] = max(row["completions"], key=lambda c: c["fine-grained_score"])["response"]
    inputs = _inputs(map_without_models(rows, tmp_path_factory.mktemp("demo")))
    assert (len(inputs.map_table), len(inputs.candidates)) == (50, 48)
    return inputs


@pytest.fixture(scope="module")
def hh(tmp_path_factory, hh_rlhf_path):
    """The first 60 HH-RLHF harmless pairs (no ratings), ROUGE-L against the last human turn, which
    favours neither reply, so the score disagrees with some annotated pairs."""
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line, _ in zip(handle, range(60))]
    for row in rows:
        row["proxy"] = row["chosen"].rsplit("\n\nAssistant:", 1)[0].rsplit("Human:", 1)[-1]
    return _inputs(map_without_models(rows, tmp_path_factory.mktemp("hh")))


def _runnable(inputs, strategy):
    # reward_margin's computation is score_margin's; only the run's scorer name gates it.
    return replace(inputs, scorer="reward") if strategy == "reward_margin" else inputs


def _key(inputs, values):
    """A per-candidate Series from {instruction_id: [values]}: the mean, NaN where there are none."""
    ids = inputs.candidates["instruction_id"]
    return pd.Series([np.mean(values[i]) if values.get(i) else np.nan for i in ids], index=ids.to_numpy())


def _pair_gaps(inputs, column):
    """The oracle for the margin strategies: per instruction, the mean chosen − rejected gap."""
    value = inputs.responses.set_index("response_id")[column].astype(float).to_dict()
    gaps = {}
    for instruction_id, chosen_id, rejected_id in inputs.pairs.itertuples(index=False):
        gaps.setdefault(instruction_id, []).append(value[chosen_id] - value[rejected_id])
    return _key(inputs, gaps)


def _chosen_lengths(inputs):
    chars = inputs.responses.set_index("response_id")["response_chars"].to_dict()
    chosen = {}
    for instruction_id, chosen_id, _ in inputs.pairs.itertuples(index=False):
        chosen.setdefault(instruction_id, set()).add(chosen_id)
    return _key(inputs, {i: [chars[r] for r in ids] for i, ids in chosen.items()})


def _paper_regions(candidates):
    """The paper's rule, written out: the ``n - 2n//3`` largest variances are high_variance; of the rest,
    the ``len//2`` smallest means are low_mean and the others high_mean; ties go by instruction id."""
    rows = sorted(zip(candidates["score_variance"], candidates["instruction_id"].astype(str), candidates["mean_score"]))
    n = len(rows)
    rest = sorted((mean, instruction_id) for _, instruction_id, mean in rows[: 2 * n // 3])
    return {
        HIGH_VARIANCE: {instruction_id for _, instruction_id, _ in rows[2 * n // 3 :]},
        LOW_MEAN: {instruction_id for _, instruction_id in rest[: len(rest) // 2]},
        HIGH_MEAN: {instruction_id for _, instruction_id in rest[len(rest) // 2 :]},
    }


def _paper_random(candidates, size, seed):
    """The paper's random baseline, written out: ``size`` positions drawn without replacement, in map order."""
    positions = np.random.default_rng(seed).choice(len(candidates), size=size, replace=False)
    return list(candidates["instruction_id"].to_numpy()[np.sort(positions)])


def _assert_selected_rank_first(selected, key, *, descending=True):
    """Every selected id's key is at least (or at most) every other eligible id's key."""
    inside = key[key.index.isin(selected)]
    outside = key[~key.index.isin(selected)]
    assert len(inside) == len(selected) and not inside.isna().any()
    if descending:
        assert inside.min() >= outside.max()
    else:
        assert inside.max() <= outside.min()


def test_every_strategy_is_registered():
    assert {"full", *SIZED} <= set(STRATEGIES.names())


@pytest.mark.parametrize("run", ["demo", "hh"])
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_every_subset_has_the_same_exact_size(request, run, fraction):
    inputs = request.getfixturevalue(run)
    size = subset_size(inputs, fraction)
    strategies = [name for name in SIZED if not (run == "hh" and name == "annotation_margin")]
    for name in strategies:
        chosen = select_instructions(name, _runnable(inputs, name), fraction=fraction)
        assert len(chosen) == len(set(chosen)) == size, name
    full = select_instructions("full", inputs, fraction=fraction)
    assert list(full) == list(inputs.candidates["instruction_id"])


@pytest.mark.parametrize("run", ["demo", "hh"])
def test_default_regions_are_the_maps_regions(request, run):
    inputs = request.getfixturevalue(run)
    counts = inputs.candidates["region"].value_counts()
    assert counts[HIGH_MEAN] == counts[LOW_MEAN] == counts[HIGH_VARIANCE]  # so the default size fits all three
    expected = _paper_regions(inputs.candidates)
    for region in REGIONS:
        chosen = select_instructions(region, inputs)
        assert set(map(str, chosen)) == expected[region]
        assert set(chosen) == set(inputs.candidates.loc[inputs.candidates["region"] == region, "instruction_id"])


@pytest.mark.parametrize("unmapped", [0, 1, 2])  # 48, 47, 46 mapped: every remainder of n / 3
def test_the_maps_pair_files_hold_each_region_whole_and_random_of_high_means_size(demo, unmapped):
    table = demo.map_table.copy()
    table.loc[table.index[:unmapped], "is_mapped"] = False
    # The quantile method makes regions of three different sizes: each file still holds its whole region.
    quantile, _ = assign_regions(table, method="quantile", variance_quantile=0.5, mean_quantile=0.25)
    inputs = replace(demo, map_table=table.assign(region=quantile))
    candidates = inputs.candidates
    assert candidates["region"].value_counts().nunique() == 3
    chosen = {name: map_subset_ids(inputs, name, seed=42) for name in MAP_STRATEGIES}
    for region in REGIONS:
        assert list(chosen[region]) == list(candidates.loc[candidates["region"] == region, "instruction_id"])
    assert list(chosen["random"]) == _paper_random(candidates, int((candidates["region"] == HIGH_MEAN).sum()), 42)
    assert list(chosen["full"]) == list(candidates["instruction_id"])


@pytest.mark.parametrize("unmapped", [0, 1, 2])  # 48, 47, 46 mapped: every remainder of n / 3
@pytest.mark.parametrize("decimals", [None, 1])  # 1: statistics rounded into many ties, broken by id
def test_regions_follow_the_map_whatever_method_made_it(demo, unmapped, decimals):
    table = demo.map_table.copy()
    table.loc[table.index[:unmapped], "is_mapped"] = False
    if decimals is not None:
        table[["mean_score", "score_variance"]] = table[["mean_score", "score_variance"]].round(decimals)
    paper, _ = assign_regions(table)
    quantile, _ = assign_regions(table, method="quantile", variance_quantile=0.5, mean_quantile=0.25)
    relabelled = replace(demo, map_table=table.assign(region=quantile))
    ids = table["instruction_id"]
    for region in REGIONS:
        strategy = STRATEGIES.get(region)()
        own, paper_size = int((quantile == region).sum()), int((paper == region).sum())
        assert own != paper_size
        assert set(strategy.select(relabelled, size=own, seed=42)) == set(ids[quantile == region])
        # Any other size follows the paper's rule, which at the paper's size is the paper's region.
        assert set(strategy.select(relabelled, size=paper_size, seed=42)) == set(ids[paper == region])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_region_rule_at_other_sizes_orders_by_variance_then_mean(demo, fraction):
    candidates = demo.candidates.set_index("instruction_id")
    eligible = candidates[candidates["region"] != HIGH_VARIANCE]  # the paper map: its high-variance third
    high_variance = select_instructions(HIGH_VARIANCE, demo, fraction=fraction)
    _assert_selected_rank_first(high_variance, candidates["score_variance"])
    high_mean = select_instructions(HIGH_MEAN, demo, fraction=fraction)
    _assert_selected_rank_first(high_mean, eligible["mean_score"])
    low_mean = select_instructions(LOW_MEAN, demo, fraction=fraction)
    _assert_selected_rank_first(low_mean, eligible["mean_score"], descending=False)


def test_region_rule_refuses_more_than_the_low_variance_two_thirds(demo):
    assert subset_size(demo, 0.75) == 36  # of 48, and 48 - 16 = 32 lie outside the high-variance third
    for region in (HIGH_MEAN, LOW_MEAN):
        with pytest.raises(ValueError, match=f"'{region}' can supply at most 32 of the 48 mapped"):
            select_instructions(region, demo, fraction=0.75)
    assert len(select_instructions(HIGH_VARIANCE, demo, fraction=0.75)) == 36


def test_random_is_seeded_and_is_the_maps_random_subset(demo):
    first = select_instructions("random", demo, fraction=0.25, seed=7)
    assert list(first) == list(select_instructions("random", demo, fraction=0.25, seed=7))
    assert set(first) != set(select_instructions("random", demo, fraction=0.25, seed=8))
    assert list(select_instructions("random", demo)) == _paper_random(demo.candidates, 16, 42)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_pair_strategies_take_the_largest_keys(demo, fraction):
    keys = {
        "annotation_margin": _pair_gaps(demo, "rating"),
        "score_margin": _pair_gaps(demo, "alignment_score"),
        "longest": _chosen_lengths(demo),
    }
    for name, key in keys.items():
        _assert_selected_rank_first(select_instructions(name, demo, fraction=fraction), key)
    reward = select_instructions("reward_margin", _runnable(demo, "reward_margin"), fraction=fraction)
    assert list(reward) == list(select_instructions("score_margin", demo, fraction=fraction))


def test_score_margin_puts_pairs_the_score_contradicts_last(hh):
    gaps = _pair_gaps(hh, "alignment_score")
    assert (gaps < 0).any() and (gaps > 0).any()
    chosen = select_instructions("score_margin", hh, fraction=0.5)
    assert (gaps[chosen] >= gaps.drop(chosen).max()).all()


@pytest.mark.parametrize("strategy", ["annotation_margin", "score_margin", "longest"])
def test_instructions_without_pairs_rank_last_so_sizes_stay_exact(demo, strategy):
    with_pairs = demo.candidates["instruction_id"].to_numpy()[:5]
    inputs = replace(demo, pairs=demo.pairs[demo.pairs["instruction_id"].isin(with_pairs)])
    chosen = STRATEGIES.get(strategy)().select(inputs, size=10, seed=42)
    assert len(chosen) == 10
    assert set(chosen[:5]) == set(with_pairs)
    # The rest have NaN keys: top_by breaks that tie by instruction id.
    assert list(chosen[5:]) == sorted(chosen[5:])


def test_annotation_margin_refuses_data_without_ratings(hh):
    assert hh.responses["rating"].isna().all()
    with pytest.raises(ValueError, match=r"'annotation_margin' needs ratings, but responses\['rating'\] is NaN"):
        select_instructions("annotation_margin", hh)


def test_reward_margin_refuses_a_run_scored_otherwise(demo):
    with pytest.raises(ValueError, match="needs a run scored by a reward model .*this run's scorer is 'rouge_l'"):
        select_instructions("reward_margin", demo)


def test_ambiguous_takes_the_most_variable_confidence(demo):
    a, b, c, d = demo.candidates["instruction_id"].to_numpy()[:4]
    margins = {
        (a, f"{a}-0", f"{a}-1"): [0.0, 0.0, 0.0],
        (b, f"{b}-0", f"{b}-1"): [-2.0, 0.0, 2.0],  # from wrong to right: ambiguous
        (c, f"{c}-0", f"{c}-1"): [5.0, 5.0, 5.0],
        (d, f"{d}-0", f"{d}-1"): [-1.0, 1.0, -1.0],
        (d, f"{d}-2", f"{d}-3"): [0.0, 0.0, 0.0],
    }
    dynamics = pd.DataFrame(
        [(*pair, epoch, margin) for pair, values in margins.items() for epoch, margin in enumerate(values)],
        columns=["instruction_id", "chosen_id", "rejected_id", "epoch", "margin"],
    )

    def sigmoid(x):
        return 1 / (1 + np.exp(-np.array(x)))

    variability = pair_variability(dynamics)
    assert variability[(b, f"{b}-0", f"{b}-1")] == pytest.approx(np.std(sigmoid([-2, 0, 2])))
    assert variability[(d, f"{d}-0", f"{d}-1")] == pytest.approx(np.std(sigmoid([-1, 1, -1])))
    assert variability[(c, f"{c}-0", f"{c}-1")] == pytest.approx(0.0)
    inputs = replace(demo, dynamics=dynamics)
    assert list(STRATEGIES.get("ambiguous")().select(inputs, size=2, seed=42)) == [b, d]
    # The other 44 candidates have no dynamics: they come after the four that do.
    assert set(STRATEGIES.get("ambiguous")().select(inputs, size=4, seed=42)) == {a, b, c, d}


def test_ambiguous_refuses_missing_or_single_epoch_dynamics(demo):
    with pytest.raises(ValueError, match="run a full-data DPO first; its pair_margins.parquet"):
        select_instructions("ambiguous", replace(demo, dynamics=None))
    one_epoch = demo.dynamics[demo.dynamics["epoch"] == 0]
    with pytest.raises(ValueError, match="at least 2 distinct epochs .*got 1"):
        select_instructions("ambiguous", replace(demo, dynamics=one_epoch))


def test_select_instructions_rejects_a_strategy_of_the_wrong_size(demo):
    with pytest.raises(ValueError, match="'test_baselines_one_too_few' returned 15 instructions, expected 16"):
        select_instructions("test_baselines_one_too_few", demo)
    with pytest.raises(ValueError, match="returned 9 instructions, expected 10"):
        select_instructions("test_baselines_one_too_few", demo, size=10)


def test_an_explicit_size_is_checked_and_excludes_a_fraction(demo):
    assert len(select_instructions("random", demo, size=0)) == 0
    with pytest.raises(ValueError, match="size must be within"):
        select_instructions("random", demo, size=49)
    with pytest.raises(ValueError, match="fraction or size, not both"):
        select_instructions("random", demo, fraction=0.5, size=10)
