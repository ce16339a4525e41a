"""Training dynamics of DPO pairs (Dataset Cartography): the per-pair statistics by hand, the region rule,
the per-instruction map, the ``training_dynamics`` strategy, the figure and a run's dynamics files."""

import math

import numpy as np
import pandas as pd
import pytest

from admap.dynamics import (
    AMBIGUOUS,
    EASY,
    HARD,
    PAIR,
    assign_dynamics_regions,
    dynamics_summary,
    dynamics_thresholds,
    instruction_dynamics,
    pair_dynamics,
    recording_points,
)
from admap.plot import plot_training_dynamics
from admap_baselines import STRATEGIES, SelectionInputs, select_instructions
from admap_baselines.dynamics_regions import TrainingDynamicsOptions
from admap_experiments.dynamics import write_training_dynamics

LOG3 = math.log(3)  # σ(ln 3) = 3/4, σ(−ln 3) = 1/4


def margins_table(margins: dict[tuple[str, str, str], list[float]], *, steps: bool = True) -> pd.DataFrame:
    """pair_margins.parquet's shape: one row per pair and recording point (epoch 0.5 k at step 2 k)."""
    rows = [
        {"pair_index": p, **dict(zip(PAIR, pair)), "epoch": 0.5 * k, "step": 2 * k, "margin": margin}
        for p, (pair, values) in enumerate(margins.items())
        for k, margin in enumerate(values, start=1)
    ]
    table = pd.DataFrame(rows)
    return table if steps else table.drop(columns="step")


def test_confidence_variability_and_correctness_by_hand():
    table = margins_table(
        {
            ("a", "a-0", "a-1"): [0.0, LOG3],  # σ: 1/2, 3/4; a zero margin is not correct
            ("b", "b-0", "b-1"): [-LOG3, -LOG3],  # σ: 1/4, 1/4
            ("c", "c-0", "c-1"): [LOG3, -LOG3],  # σ: 3/4, 1/4
        }
    )
    # A pair listed twice in the training set has two rows per point; they are averaged, not counted twice.
    table = pd.concat([table, table[table["instruction_id"] == "c"]], ignore_index=True)
    pairs = pair_dynamics(table).set_index("instruction_id")
    assert list(pairs.index) == ["a", "b", "c"]
    assert pairs["n_points"].tolist() == [2, 2, 2]
    assert pairs["confidence"].tolist() == pytest.approx([0.625, 0.25, 0.5])
    assert pairs["variability"].tolist() == pytest.approx([0.125, 0.0, 0.25])  # population std
    assert pairs["correctness"].tolist() == pytest.approx([0.5, 0.0, 0.5])
    # Row order does not matter.
    shuffled = pair_dynamics(table.sample(frac=1, random_state=0))
    pd.testing.assert_frame_equal(shuffled, pair_dynamics(table))


def test_a_recording_point_is_an_epoch_and_step():
    table = margins_table({("a", "a-0", "a-1"): [0.0, LOG3, -LOG3]})
    table["epoch"] = 0.0  # a long epoch: the rounded epoch is the same at every point, the step is not
    assert recording_points(table) == 3
    assert pair_dynamics(table)["n_points"].tolist() == [3]
    assert recording_points(table.drop(columns="step")) == 1


def test_fewer_than_two_recording_points_or_missing_columns_are_refused():
    one_point = margins_table({("a", "a-0", "a-1"): [1.0], ("b", "b-0", "b-1"): [2.0]})
    with pytest.raises(ValueError, match="at least 2 distinct epochs or steps .*got 1: .*pair_margins_every"):
        pair_dynamics(one_point)
    with pytest.raises(ValueError, match=r"lacks columns \['margin'\]"):
        pair_dynamics(one_point.drop(columns="margin"))


def test_regions_top_variability_third_is_ambiguous_the_rest_halved_by_confidence():
    pairs = pd.DataFrame(
        {
            "instruction_id": [f"i{k}" for k in range(9)],
            "chosen_id": "c",
            "rejected_id": "r",
            "confidence": [0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.5, 0.5, 0.5],
            "variability": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.3, 0.2, 0.1],
        }
    )
    regions = assign_dynamics_regions(pairs)
    assert regions.tolist() == [EASY] * 3 + [HARD] * 3 + [AMBIGUOUS] * 3
    assert dynamics_thresholds(pairs.assign(region=regions)).variability == 0.1
    assert dynamics_thresholds(pairs.assign(region=regions)).confidence == 0.7
    # Equal statistics: the ids decide, as assign_regions decides (the larger ids sort last, into the top).
    tied = pairs.assign(confidence=0.5, variability=0.1)
    assert assign_dynamics_regions(tied).tolist() == [HARD] * 3 + [EASY] * 3 + [AMBIGUOUS] * 3
    # The same pairs in another order get the same regions, aligned with the index.
    shuffled = tied.sample(frac=1, random_state=1)
    assert assign_dynamics_regions(shuffled).sort_index().tolist() == assign_dynamics_regions(tied).tolist()
    # The ids tie-break reaches past the instruction to the chosen and rejected ids.
    one_instruction = tied.assign(instruction_id="i", chosen_id=[f"c{k}" for k in range(9)])
    assert assign_dynamics_regions(one_instruction).tolist() == [HARD] * 3 + [EASY] * 3 + [AMBIGUOUS] * 3


def test_instruction_means_and_majority_region():
    pairs = pd.DataFrame(
        {
            "instruction_id": ["x", "x", "x", "y", "y", "z"],
            "chosen_id": list("abcdef"),
            "rejected_id": "r",
            "confidence": [0.9, 0.8, 0.1, 0.2, 0.6, 0.95],
            "variability": [0.0, 0.1, 0.2, 0.05, 0.3, 0.0],
            "correctness": [1.0, 1.0, 0.0, 0.0, 0.5, 1.0],
            "region": [EASY, EASY, HARD, HARD, AMBIGUOUS, EASY],
        }
    )
    instructions = instruction_dynamics(pairs).set_index("instruction_id")
    assert instructions["n_pairs"].tolist() == [3, 2, 1]
    assert instructions["confidence"].tolist() == pytest.approx([0.6, 0.4, 0.95])
    assert instructions["variability"].tolist() == pytest.approx([0.1, 0.175, 0.0])
    assert instructions["correctness"].tolist() == pytest.approx([2 / 3, 0.25, 1.0])
    # y's pairs split one hard, one ambiguous: a tie goes to ambiguous.
    assert instructions["region"].tolist() == [EASY, AMBIGUOUS, EASY]


def test_summary_shares_and_means():
    table = margins_table({(f"i{k}", "c", "r"): [k - 4.0, 2 * (k - 4.0), 0.5 * k] for k in range(9)})
    summary = dynamics_summary(pair_dynamics(table))
    assert summary["dynamics_pairs"] == 9 and summary["dynamics_points"] == 3
    assert summary["dynamics_ambiguous_share"] == pytest.approx(3 / 9)
    assert summary["dynamics_easy_share"] + summary["dynamics_hard_share"] == pytest.approx(6 / 9)
    assert 0 < summary["dynamics_confidence"] < 1 and summary["dynamics_variability"] > 0


# ---- the training_dynamics strategy: six instructions of one pair each over three points, and one without.
STRATEGY_MARGINS = {
    ("i0", "i0-a", "i0-b"): [3.0, 3.0, 3.0],  # easy: the most confident
    ("i1", "i1-a", "i1-b"): [2.0, 2.0, 2.0],  # easy
    ("i2", "i2-a", "i2-b"): [-2.0, -2.0, -2.0],  # hard
    ("i3", "i3-a", "i3-b"): [-3.0, -3.0, -3.0],  # hard: the least confident
    ("i4", "i4-a", "i4-b"): [-2.0, 0.0, 3.0],  # ambiguous: the most variable; confidence above 1/2
    ("i5", "i5-a", "i5-b"): [-1.0, 0.0, 0.5],  # ambiguous; confidence below 1/2
}


@pytest.fixture
def strategy_inputs():
    ids = ["i0", "i1", "i2", "i3", "i4", "i5", "i6"]  # i6 has no pair in the dynamics
    map_table = pd.DataFrame({"instruction_id": ids, "is_mapped": True, "region": "high_mean"})
    return SelectionInputs(map_table, pd.DataFrame(), pd.DataFrame(), "annotation", margins_table(STRATEGY_MARGINS))


@pytest.mark.parametrize(
    ("region", "size", "expected"),
    [
        (EASY, 2, ["i0", "i1"]),
        (HARD, 2, ["i3", "i2"]),
        (AMBIGUOUS, 2, ["i4", "i5"]),
        # Past the region's own instructions, the others by the region's key; no dynamics last.
        (EASY, 4, ["i0", "i1", "i4", "i5"]),
        (HARD, 3, ["i3", "i2", "i5"]),
        (HARD, 7, ["i3", "i2", "i5", "i4", "i1", "i0", "i6"]),
        (EASY, 1, ["i0"]),
    ],
)
def test_the_strategy_takes_its_region_best_first(strategy_inputs, region, size, expected):
    options = TrainingDynamicsOptions(region=region)
    chosen = select_instructions("training_dynamics", strategy_inputs, size=size, options=options)
    assert list(chosen) == expected


def test_the_strategy_defaults_to_ambiguous_and_names_what_is_missing(strategy_inputs):
    from dataclasses import replace

    assert list(select_instructions("training_dynamics", strategy_inputs, size=2)) == ["i4", "i5"]
    with pytest.raises(ValueError, match="region must be one of"):
        TrainingDynamicsOptions(region="medium")
    with pytest.raises(ValueError, match="'training_dynamics' needs training dynamics: give selection.dynamics"):
        select_instructions("training_dynamics", replace(strategy_inputs, dynamics=None), size=2)
    one_point = strategy_inputs.dynamics[strategy_inputs.dynamics["step"] == 2]
    with pytest.raises(ValueError, match="at least 2 distinct epochs or steps"):
        select_instructions("training_dynamics", replace(strategy_inputs, dynamics=one_point), size=2)


def test_the_strategy_and_its_region_reach_the_config():
    from admap.config import build, to_dict
    from admap_baselines import SelectionOptions

    assert "training_dynamics" in STRATEGIES.names()
    selection = build(SelectionOptions, {"strategy": "training_dynamics", "training_dynamics": {"region": "hard"}})
    assert to_dict(selection)["training_dynamics"] == {"region": "hard"}
    with pytest.raises(ValueError, match="region"):
        build(SelectionOptions, {"strategy": "training_dynamics", "training_dynamics": {"regoin": "hard"}})


def test_the_figure_is_a_png(tmp_path):
    from PIL import Image

    table = margins_table({(f"i{k}", "c", "r"): [k - 10.0, 0.3 * (k - 10.0), 0.1 * k] for k in range(30)})
    # A staging name, as a publish writes it: the PNG is written whatever the suffix.
    path = plot_training_dynamics(pair_dynamics(table), tmp_path / ".dynamics.png.partial", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 500


def test_a_run_writes_its_dynamics_when_it_has_two_points(tmp_path):
    table = margins_table({(f"i{k}", "c", "r"): [k - 4.0, 2 * (k - 4.0), 0.5 * k] for k in range(9)})
    row = write_training_dynamics(table, tmp_path)
    assert row["dynamics_table"] == str(tmp_path / "dynamics.parquet")
    assert row["dynamics_figure"] == str(tmp_path / "dynamics.png")
    written = pd.read_parquet(tmp_path / "dynamics.parquet")
    pd.testing.assert_frame_equal(written, pair_dynamics(table), check_dtype=False)
    assert (tmp_path / "dynamics.png").read_bytes()[:4] == b"\x89PNG"
    assert row["dynamics_points"] == 3 and row["dynamics_pairs"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamics.parquet", "dynamics.png"]  # no staging left

    single = tmp_path / "single"
    single.mkdir()
    assert write_training_dynamics(table[table["step"] == 2], single) == {"dynamics_points": 1}
    assert list(single.iterdir()) == []


def test_recorder_records_every_n_steps_and_each_step_once(monkeypatch):
    """The callback alone, with a fake trainer: every 2 steps, and the epoch end on step 6 is not recorded twice."""
    from types import SimpleNamespace

    from admap_experiments import train

    scored_at: list[int] = []
    state = SimpleNamespace(global_step=0, epoch=0.0)
    pairs = pd.DataFrame({"instruction_id": ["a", "b"], "chosen_id": ["a0", "b0"], "rejected_id": ["a1", "b1"]})

    def fake_margins(trainer, *, batch_size):
        scored_at.append(state.global_step)
        return [0.1 * state.global_step] * len(pairs)

    monkeypatch.setattr(train, "pair_margins", fake_margins)

    class FakeDataset:
        """What the recorder reads of a datasets.Dataset: the pair id columns."""

        def select_columns(self, columns):
            return SimpleNamespace(to_pandas=lambda: pairs[columns].copy())

    class FakeTrainer:
        train_dataset = FakeDataset()

    def run(every, steps, epoch_ends):
        scored_at.clear()
        recorder = train.pair_margin_recorder(batch_size=4, every=every)
        recorder.trainer = FakeTrainer()
        for step in range(1, steps + 1):
            state.global_step, state.epoch = step, step / steps
            recorder.on_step_end(None, state, None)
            if step in epoch_ends:
                recorder.on_epoch_end(None, state, None)
        return recorder.table()

    table = run(every=2, steps=6, epoch_ends={6})
    assert scored_at == [2, 4, 6]
    assert table["step"].tolist() == [2, 2, 4, 4, 6, 6]
    assert table["epoch"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0], abs=1e-4)
    assert table["pair_index"].tolist() == [0, 1] * 3 and table["instruction_id"].tolist() == ["a", "b"] * 3
    assert table["margin"].tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    # Epoch ends that are not on a multiple of N are recorded too; without N only epoch ends are.
    assert run(every=4, steps=6, epoch_ends={3, 6})["step"].unique().tolist() == [3, 4, 6]
    assert run(every=None, steps=6, epoch_ends={3, 6})["step"].unique().tolist() == [3, 6]


def test_pair_margins_every_is_checked():
    from admap_experiments.config import TrainOptions

    assert TrainOptions(pair_margins_every=3).pair_margins_every == 3
    with pytest.raises(ValueError, match="pair_margins_every must be >= 1"):
        TrainOptions(pair_margins_every=0)


@pytest.mark.slow
def test_a_real_run_records_every_n_steps_with_and_without_precomputed_reference(tmp_path):
    """Four DPO steps of a small random policy, recording every 2: the same margins whether TRL precomputes
    the reference log-probabilities (the recorder reads them from the training set) or the recorder runs the
    reference model itself."""
    from admap.durable import write_jsonl
    from admap_experiments.config import TrainOptions
    from admap_experiments.random_policy import write_random_policy
    from admap_experiments.train import train_dpo

    topics = ["tea", "rain", "maps", "bread", "tides", "chess", "clocks", "bees"]  # one epoch: 4 steps of 2
    records = [
        {
            "instruction_id": f"i{k}",
            "chosen_id": f"i{k}-good",
            "rejected_id": f"i{k}-bad",
            "prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": [{"role": "assistant", "content": f"{topic.title()} is a fine subject with a long history."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        }
        for k, topic in enumerate(topics)
    ]
    write_jsonl(records, tmp_path / "pairs.jsonl")
    texts = [m["content"] for r in records for key in ("prompt", "chosen", "rejected") for m in r[key]]
    policy = write_random_policy(tmp_path / "policy", texts, hidden_size=32, n_layers=2, n_heads=4)
    dpo = {"max_steps": 4, "per_device_train_batch_size": 2, "max_length": 64, "learning_rate": 1e-3, "seed": 0}
    margins = {}
    for precompute in (False, True):
        options = TrainOptions(
            model=str(policy),
            device="cpu",
            pair_margins_every=2,
            dpo=dpo | {"precompute_ref_log_probs": precompute, "per_device_eval_batch_size": 4},
        )
        _, metrics, margins[precompute] = train_dpo(
            tmp_path / "pairs.jsonl", options, out_dir=tmp_path / str(precompute), run_name="t", report_to=[]
        )
        assert metrics["train_steps"] == 4
    for table in margins.values():
        # Steps 2 and 4; the epoch's end on step 4 is not recorded twice.
        assert table.groupby("step")["pair_index"].apply(sorted).to_dict() == {2: list(range(8)), 4: list(range(8))}
        assert table["margin"].abs().max() > 1e-4  # the policy moved away from the reference
    merged = margins[False].merge(margins[True], on=["pair_index", "step"], suffixes=("_own", "_precomputed"))
    assert len(merged) == 16
    np.testing.assert_allclose(merged["margin_own"], merged["margin_precomputed"], atol=1e-4)
    assert pair_dynamics(margins[True])["n_points"].tolist() == [2] * 8
