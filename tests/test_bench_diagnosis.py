"""benchmarks/bench_diagnosis.py's curves on planted sets: the ROC and precision-recall points of a ranking, their
seed means on a grid, and the figures drawn from them."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks.bench_diagnosis import FIGURES, curve_points, plot_curves, seed_averaged_curves

# 10 pairs, 3 planted; two pairs tie at 0.8, one planted and one not.
PLANTED = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
SUSPICION = np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02])


def test_curve_points_sweep_from_flagging_nothing_to_flagging_everything():
    points = curve_points(PLANTED, SUSPICION)
    assert list(points.columns) == ["threshold", "flagged", "false_positive_rate", "true_positive_rate", "precision"]
    # One row per distinct suspicion plus +inf (the tie is one step), in sweep order.
    assert len(points) == len(np.unique(SUSPICION)) + 1 == 10
    first, last = points.iloc[0], points.iloc[-1]
    assert np.isinf(first["threshold"]) and first["flagged"] == 0 and first["precision"] == 1.0
    assert (first["false_positive_rate"], first["true_positive_rate"]) == (0.0, 0.0)
    assert last["flagged"] == 10 and (last["false_positive_rate"], last["true_positive_rate"]) == (1.0, 1.0)
    assert last["precision"] == pytest.approx(0.3)
    # At 0.8 both tied pairs are flagged: 3 pairs, 2 planted of 3, 1 clean of 7.
    at_tie = points[points["threshold"] == 0.8].iloc[0]
    assert at_tie["flagged"] == 3 and at_tie["precision"] == pytest.approx(2 / 3)
    assert at_tie["true_positive_rate"] == pytest.approx(2 / 3)
    assert at_tie["false_positive_rate"] == pytest.approx(1 / 7)
    assert np.all(np.diff(points["flagged"]) > 0)


@pytest.mark.parametrize("seed", range(5))
def test_curve_points_give_back_auroc_and_average_precision(seed):
    rng = np.random.default_rng(seed)
    planted = np.zeros(200, dtype=bool)
    planted[rng.choice(200, size=30, replace=False)] = True
    # Noisy suspicion that favours the planted pairs, rounded so that ties occur.
    suspicion = np.round(planted + rng.normal(scale=0.8, size=200), 1)
    points = curve_points(planted, suspicion)
    fpr, tpr, precision = (points[c].to_numpy() for c in ["false_positive_rate", "true_positive_rate", "precision"])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(planted, suspicion))
    assert np.sum(np.diff(tpr) * precision[1:]) == pytest.approx(average_precision_score(planted, suspicion))


def test_a_perfect_ranking_reaches_full_recall_before_any_false_positive():
    points = curve_points(PLANTED, PLANTED + 0.0)
    at_planted = points[points["flagged"] == PLANTED.sum()].iloc[0]
    assert (at_planted["false_positive_rate"], at_planted["true_positive_rate"], at_planted["precision"]) == (0, 1, 1)


def test_curve_points_refuse_a_set_without_both_classes():
    with pytest.raises(ValueError, match="planted and clean"):
        curve_points(np.zeros(4, dtype=bool), np.arange(4.0))
    with pytest.raises(ValueError, match=r"\(P,\)"):
        curve_points(PLANTED, SUSPICION[:-1])


def seed_points(rankings: dict[int, np.ndarray]) -> pd.DataFrame:
    return pd.concat(
        [curve_points(PLANTED, suspicion).assign(method="m", seed=seed) for seed, suspicion in rankings.items()],
        ignore_index=True,
    )


def test_seed_means_on_the_grid():
    perfect, reversed_ = PLANTED + 0.0, 1.0 - PLANTED
    curves = seed_averaged_curves(seed_points({0: perfect, 1: reversed_}), ["method"], grid_points=11)
    roc = curves[curves["curve"] == "roc"].set_index("x")
    pr = curves[curves["curve"] == "precision_recall"].set_index("x")
    assert len(roc) == len(pr) == 11 and set(curves["seeds"]) == {2}
    # Perfect: every planted pair at false-positive rate 0; reversed: none until every clean one is flagged.
    assert roc.loc[0.0, "y_mean"] == pytest.approx(0.5) and roc.loc[0.5, "y_mean"] == pytest.approx(0.5)
    assert roc.loc[1.0, "y_mean"] == 1.0 and roc.loc[0.5, "y_std"] == pytest.approx(np.std([1, 0], ddof=1))
    # Precision at recall 1: 1 when the planted come first, 3/10 when they come last.
    assert pr.loc[1.0, "y_mean"] == pytest.approx((1 + 0.3) / 2)


def test_one_seed_is_its_own_curve_with_the_step_that_average_precision_sums():
    curves = seed_averaged_curves(seed_points({0: SUSPICION}), ["method"], grid_points=4)
    pr = curves[curves["curve"] == "precision_recall"]
    # Recall 1/3 is first reached at 0.9 (precision 1), 2/3 at the tie (2/3), 1 at 0.1 (3/6).
    np.testing.assert_allclose(pr["y_mean"], [1.0, 1.0, 2 / 3, 0.5])
    assert pr["y_std"].isna().all()
    roc = curves[curves["curve"] == "roc"]
    np.testing.assert_allclose(roc["x"], [0, 1 / 3, 2 / 3, 1])
    assert roc["y_mean"].iloc[0] == pytest.approx(1 / 3)  # the highest rate at false-positive rate 0


def test_the_figures_have_a_panel_per_run(tmp_path):
    rows, summary = [], []
    for run in ("a", "b"):
        for method in ("random", "cleanlab"):
            points = seed_points({0: SUSPICION, 1: SUSPICION[::-1]}).assign(method=method, run=run)
            rows.append(points.assign(dataset="d", scorer="s"))
            summary.append(
                {"run": run, "dataset": "d", "scorer": "s", "method": method, "n_pairs": 10, "n_planted": 3}
                | {"auroc_mean": 0.7, "auroc_std": 0.1, "ap_mean": 0.5, "ap_std": 0.1}
            )
    curves = seed_averaged_curves(pd.concat(rows), ["run", "dataset", "scorer", "method"])
    for curve in FIGURES:
        plot_curves(curves, pd.DataFrame(summary), tmp_path / f"{curve}.png", curve=curve, seeds=[0, 1])
        assert (tmp_path / f"{curve}.png").read_bytes().startswith(b"\x89PNG")
