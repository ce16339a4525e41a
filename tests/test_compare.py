import numpy as np
import pandas as pd
import pytest

from admap.cli import main
from admap.compare import length_correlation, region_agreement, region_confusion, score_agreement
from tests.runs import map_without_models


def test_score_agreement_on_known_rankings():
    scores = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0, 4.0, 5.0],
            "same_order": [10.0, 20.0, 30.0, 40.0, 50.0],
            "reversed": [5.0, 4.0, 3.0, 2.0, np.nan],
        }
    )
    table = score_agreement(scores).set_index(["scorer_a", "scorer_b"])
    assert table.loc[("a", "same_order"), "spearman"] == pytest.approx(1.0)
    assert table.loc[("a", "reversed"), "kendall"] == pytest.approx(-1.0)
    assert table.loc[("a", "reversed"), "responses"] == 4  # only rows both scored
    lengths = length_correlation(scores, pd.Series([50, 40, 30, 20, 10]))
    assert lengths.set_index("scorer").loc["a", "spearman_with_length"] == pytest.approx(-1.0)


def test_region_agreement_by_hand():
    regions = pd.DataFrame(
        {
            "x": ["high_mean", "high_mean", "low_mean", "high_variance", "unmapped"],
            "y": ["high_mean", "low_mean", "low_mean", "high_variance", "high_mean"],
        },
        index=list("abcde"),
    )
    table = region_agreement(regions).set_index("region")
    # e is unmapped by x, so it is left out: high_mean {a, b} vs {a}.
    assert table.loc["high_mean", "jaccard"] == pytest.approx(1 / 2)
    assert table.loc["low_mean", "jaccard"] == pytest.approx(1 / 2)
    assert table.loc["high_variance", "jaccard"] == pytest.approx(1.0)
    confusion = region_confusion(regions, "x", "y")
    assert confusion.loc["high_mean", "low_mean"] == 1 and confusion.loc["unmapped", "high_mean"] == 1


def test_compare_scorers_command_on_two_model_free_runs(tmp_path):
    """rouge_l against a proxy column and the annotation itself: the whole path with no model to load."""
    rows = []
    for k in range(12):
        answers = [f"answer {k} with some detail about topic {k}", f"a shorter answer {k}", f"unrelated text {k * 7}"]
        for chosen, rejected in [(0, 1), (0, 2), (1, 2)]:
            rows.append(
                {
                    "instruction": f"Question {k}?",
                    "input": "",
                    "chosen": answers[chosen],
                    "rejected": answers[rejected],
                    "proxy": f"an answer {k} with detail about topic {k}",
                }
            )
    for scorer in ("rouge_l", "annotation"):
        map_without_models(rows, tmp_path, scorer=scorer, name=scorer)
    out = tmp_path / "compare"
    assert (
        main(["compare-scorers", str(tmp_path / "rouge_l"), str(tmp_path / "annotation"), "--out", str(out), "--quiet"])
        == 0
    )
    agreement = pd.read_csv(out / "agreement.csv")
    assert agreement[["scorer_a", "scorer_b", "responses"]].values.tolist() == [["rouge_l", "annotation", 36]]
    assert -1 <= agreement["spearman"].iloc[0] <= 1
    assert set(pd.read_csv(out / "regions.csv")["region"]) == {"high_mean", "low_mean", "high_variance"}
    assert (out / "compare.png").stat().st_size > 0 and "## Length bias" in (out / "compare.md").read_text()
    with pytest.raises(SystemExit):
        main(["compare-scorers", "--out", str(out)])
    assert main(["compare-scorers", str(tmp_path / "rouge_l"), "--out", str(out)]) == 2
