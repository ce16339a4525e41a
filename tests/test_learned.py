"""The learned-preference scorer: pairs, grouped folds, the symmetric pairwise fit, the out-of-fold
guarantee, recovery of a planted preference, and `admap map --scorer learned` end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from progress_bars import record_bars

from admap.score import SCORERS
from admap.score import learned as learned_module
from admap.score.causal_lm import response_window
from admap.score.learned import (
    LearnedScorer,
    cross_fit,
    cross_fitted_utilities,
    fit_pairwise,
    instruction_folds,
    pair_agreement,
    rated_pairs,
)


def planted_pairs(
    n_instructions: int, per_instruction: int, d: int, *, seed: int, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(features (N, d), pairs (P, 2), groups (N,), true weights (d,))``: every pair of an instruction's
    responses, the preferred one drawn from a Bradley–Terry model of the true utility (exact if noise 0)."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=d)
    features = rng.normal(size=(n_instructions * per_instruction, d))
    groups = np.repeat([f"i{k:03d}" for k in range(n_instructions)], per_instruction)
    utility = features @ true_w
    pairs = []
    for start in range(0, len(features), per_instruction):
        for a in range(start, start + per_instruction):
            for b in range(a + 1, start + per_instruction):
                margin = utility[a] - utility[b]
                a_wins = rng.uniform() < 1 / (1 + np.exp(-margin / noise)) if noise else margin > 0
                pairs.append((a, b) if a_wins else (b, a))
    return features, np.array(pairs), groups, true_w


def test_learned_is_registered_and_needs_no_proxy():
    assert "learned" in SCORERS and SCORERS.get("learned") is LearnedScorer
    assert not LearnedScorer.needs_proxy


def test_instruction_folds_are_grouped_balanced_and_seeded():
    groups = np.repeat([f"g{k}" for k in range(23)], 3)
    folds = instruction_folds(groups, 5, seed=1)
    per_group = pd.Series(folds).groupby(groups).nunique()
    assert (per_group == 1).all()  # an instruction never straddles two folds
    sizes = pd.Series(folds[::3]).value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(folds, instruction_folds(groups, 5, seed=1))
    assert not np.array_equal(folds, instruction_folds(groups, 5, seed=2))
    with pytest.raises(ValueError, match="folds"):
        instruction_folds(groups, 1)


def test_rated_pairs_from_ratings_and_from_the_datasets_own_pairs():
    responses = pd.DataFrame(
        {
            "instruction_id": ["a", "a", "a", "b", "b"],
            "response_id": ["a0", "a1", "a2", "b0", "b1"],
            "rating": [3.0, 5.0, 3.0, 1.0, np.nan],
        }
    )
    # Ratings: every pair with different ratings, the higher preferred; the tie a0/a2 is skipped.
    assert sorted(map(tuple, rated_pairs(responses).tolist())) == [(1, 0), (1, 2)]
    preferences = pd.DataFrame({"instruction_id": ["b", "a"], "chosen_id": ["b1", "a2"], "rejected_id": ["b0", "gone"]})
    # The dataset's own pairs win over ratings; a pair naming a response that was not loaded is dropped.
    assert rated_pairs(responses, preferences).tolist() == [[4, 3]]
    with pytest.raises(ValueError, match="neither preference pairs nor ratings"):
        rated_pairs(responses.assign(rating=np.nan))


def test_no_response_is_scored_by_a_model_that_saw_its_instruction(monkeypatch):
    """Instrumented: each fitted model records the instructions of its training pairs and tags its
    utilities with its own number; every response's tag must name a model that never saw it."""
    features, pairs, groups, _ = planted_pairs(40, 3, 4, seed=0)
    unpaired = np.array(["lonely-1", "lonely-2", "lonely-2"])  # instructions with responses but no pair
    groups = np.concatenate([groups, unpaired])
    features = np.vstack([features, np.ones((3, 4))])
    tagged = np.hstack([features, np.ones((len(features), 1))])  # a constant column carries the tag
    trained_on: list[set] = []

    def recording_fit(features, pairs, *, regularization):
        trained_on.append(set(groups[pairs.ravel()]))
        weights = np.zeros(features.shape[1])
        weights[-1] = len(trained_on)  # utility = model number, 1-based
        return weights

    monkeypatch.setattr(learned_module, "fit_pairwise", recording_fit)
    utilities = cross_fitted_utilities(tagged, pairs, groups, folds=5, seed=3)
    assert len(trained_on) == 5 and all(trained_on)
    scored_by = utilities.astype(int) - 1
    assert set(scored_by) == set(range(5))
    for group, model in zip(groups, scored_by):
        assert group not in trained_on[model]
    # Every labelled instruction trains all models but the one that scores it.
    for group in set(groups[pairs.ravel()]):
        assert sum(group in seen for seen in trained_on) == 4


def test_cross_fit_scores_each_fold_with_the_model_that_excluded_it():
    features, pairs, groups, _ = planted_pairs(30, 2, 5, seed=1)
    fit = cross_fit(features, pairs, groups, folds=3, seed=0)
    np.testing.assert_allclose(fit.utilities, np.einsum("nd,nd->n", features, fit.weights[fit.fold]))
    for k in range(3):
        held_out_pairs = pairs[fit.fold[pairs[:, 0]] == k]
        refit = fit_pairwise(features, pairs[fit.fold[pairs[:, 0]] != k])
        np.testing.assert_allclose(fit.weights[k], refit)
        assert len(held_out_pairs) > 0


def test_the_fit_is_symmetric_in_each_pairs_order():
    features, pairs, groups, _ = planted_pairs(50, 3, 6, seed=2, noise=1.0)
    weights = fit_pairwise(features, pairs)
    # Swapping every pair is the same data with every label reversed: the model is exactly negated.
    np.testing.assert_allclose(fit_pairwise(features, pairs[:, ::-1]), -weights, atol=1e-6)
    utilities = cross_fitted_utilities(features, pairs, groups, seed=0)
    swapped = cross_fitted_utilities(features, pairs[:, ::-1], groups, seed=0)
    np.testing.assert_allclose(swapped, -utilities, atol=1e-6)
    np.testing.assert_array_equal(np.argsort(swapped, kind="stable"), np.argsort(-utilities, kind="stable"))
    # The order of the pairs themselves changes nothing.
    shuffled = pairs[np.random.default_rng(0).permutation(len(pairs))]
    np.testing.assert_allclose(cross_fitted_utilities(features, shuffled, groups, seed=0), utilities, atol=1e-6)


@pytest.mark.parametrize("per_instruction", [2, 4])
def test_recovers_a_planted_linear_preference(per_instruction):
    features, pairs, groups, true_w = planted_pairs(150, per_instruction, 8, seed=3, noise=0.5)
    utilities = cross_fitted_utilities(features, pairs, groups, seed=0, regularization=0.01)
    truth = features @ true_w
    true_order = np.where((truth[pairs[:, 0]] > truth[pairs[:, 1]])[:, None], pairs, pairs[:, ::-1])
    assert pair_agreement(utilities, true_order) > 0.9  # chance is 0.5
    assert np.corrcoef(utilities, truth)[0, 1] > 0.9


def test_deterministic_with_a_seed():
    features, pairs, groups, _ = planted_pairs(40, 2, 5, seed=4, noise=1.0)
    first = cross_fitted_utilities(features, pairs, groups, seed=7)
    np.testing.assert_array_equal(first, cross_fitted_utilities(features, pairs, groups, seed=7))
    assert not np.array_equal(first, cross_fitted_utilities(features, pairs, groups, seed=8))


def test_clear_errors():
    features, pairs, groups, _ = planted_pairs(4, 2, 3, seed=5)
    with pytest.raises(ValueError, match="4 instruction\\(s\\) with pairs, 5 folds"):
        cross_fitted_utilities(features, pairs, groups, folds=5)
    with pytest.raises(ValueError, match="two different instructions"):
        cross_fitted_utilities(features, np.array([[0, 2]]), groups, folds=2)
    with pytest.raises(ValueError, match="outside"):
        cross_fitted_utilities(features, np.array([[0, 99]]), groups, folds=2)
    with pytest.raises(ValueError, match="at least one pair"):
        fit_pairwise(features, np.empty((0, 2), dtype=int))
    for bad in ({"folds": 1}, {"regularization": 0.0}, {"features": "tfidf"}):
        with pytest.raises(ValueError, match="learned"):
            LearnedScorer(**bad)


def test_response_window_keeps_the_response_and_cuts_the_prompt_on_the_left():
    assert response_window([1, 2, 3, 4], [7, 8], 5) == ([2, 3, 4, 7, 8], 2)
    assert response_window([1, 2], [7, 8, 9], 2) == ([7, 8], 2)
    assert response_window([1, 2], [], 3) == ([1, 2], 0)


def test_scorer_fits_the_datasets_pairs_out_of_fold(monkeypatch):
    features, pairs, groups, _ = planted_pairs(60, 2, 6, seed=6, noise=0.3)
    responses = pd.DataFrame(
        {
            "instruction_id": groups,
            "response_id": [f"r{i}" for i in range(len(groups))],
            "response": [f"text {i}" for i in range(len(groups))],
            "rating": np.nan,
        }
    )
    preferences = pd.DataFrame(
        {
            "instruction_id": groups[pairs[:, 0]],
            "chosen_id": responses["response_id"].to_numpy()[pairs[:, 0]],
            "rejected_id": responses["response_id"].to_numpy()[pairs[:, 1]],
        }
    )
    scorer = LearnedScorer(folds=3, seed=0, progress=False)
    monkeypatch.setattr(scorer, "featurize", lambda instructions, responses: features)
    scores = scorer.score(pd.DataFrame(), responses, preferences=preferences)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, cross_fitted_utilities(features, pairs, groups, folds=3, seed=0), rtol=1e-5)
    assert scorer.fit_summary["pairs"] == 60 and scorer.fit_summary["instructions_with_pairs"] == 60
    assert scorer.fit_summary["out_of_fold_agreement"] > 0.7
    with pytest.raises(ValueError, match="neither preference pairs nor ratings"):
        scorer.score(pd.DataFrame(), responses)


def test_from_map_config():
    from admap.commands.map import MapConfig
    from admap.config import build

    config = build(
        MapConfig, {"scorer": "learned", "learned": {"folds": 3, "regularization": 0.5, "seed": 9}, "device": "cpu"}
    )
    scorer = config.build_scorer(progress=False)
    assert (scorer.folds, scorer.regularization, scorer.seed, scorer.features) == (3, 0.5, 9, "embedding")
    assert scorer.model == config.embedding_model and scorer.label() == f"learned ({config.embedding_model})"


def test_admap_map_scorer_learned_refuses_too_few_instructions_before_loading_a_model(tmp_path, caplog):
    from admap.cli import main

    argv = ["map", "--scorer", "learned", "--limit", "3", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 2
    assert "3 instruction(s) with pairs, 5 folds (lower --learned-folds" in caplog.text


@pytest.mark.slow
def test_admap_map_scorer_learned_on_hh_rlhf(tmp_path, hh_rlhf_path):
    from admap.cli import main

    out = tmp_path / "learned"
    argv = ["map", str(hh_rlhf_path), "--limit", "150", "--skip-invalid", "--scorer", "learned"]
    # bf16 on the CPU: the embedding features are checked against fp32 first, as the reference scorer's are.
    argv += ["--embed-precision", "bf16", "--embedding-cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--device", "cpu", "--no-view", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scorer"]["model"] == "all-MiniLM-L6-v2" and summary["proxies"] == {}
    embedding, check = summary["scorer"]["embedding"], summary["scorer"]["embedding"]["precision_check"]
    assert embedding["engine"] == "local" and embedding["precision"] == check["used"]
    assert check["requested"] == "bf16" and check["pairs"] >= 100 and check["spearman"] > 0.99
    assert embedding["encoded_texts"] == embedding["distinct_texts"] > 0
    fit = summary["scorer"]["fit"]
    assert fit["pairs"] == len(pd.read_parquet(out / "preferences.parquet"))
    assert 0 <= fit["out_of_fold_agreement"] <= 1
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["alignment_score"].notna().all()
    assert (out / "map.png").exists() and (out / "pairs" / "full.jsonl").exists()


@pytest.mark.slow
def test_lm_hidden_features_pool_the_response_in_its_conversation(monkeypatch):
    """SmolLM2's hidden states, batched as one run and one at a time: the same features."""
    from admap.score.learned import lm_hidden_features

    conversations = [[{"role": "user", "content": "How do I pick a lock?"}]] * 2 + [
        [{"role": "user", "content": "Name a colour."}]
    ]
    texts = ["I can't help with that.", "Insert a tension wrench, then rake the pins until they set.", "Blue."]
    batched = lm_hidden_features(conversations, texts, device="cpu", batch_size=3, max_length=48, progress=False)
    assert batched.shape == (3, 576) and np.isfinite(batched).all()
    bars = record_bars(monkeypatch)
    single = lm_hidden_features(conversations, texts, device="cpu", batch_size=1, max_length=48)
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert [(bar.total, bar.updates) for bar in bars] == [(3, [1, 1, 1])]  # one bar over the responses
    assert not np.allclose(batched[0], batched[1])
