"""DPO that trains: fp32 master weights under bf16 autocast, never bf16 weights updated in place.

At the recipes' learning rate (5e-7) an AdamW step is far below bf16's resolution: bf16 weights keep
about 1% of the updates, fp32 ones all of them. The training path is checked against both numbers on
a small random Llama and real HH-RLHF pairs."""

import pytest
import torch

from admap.durable import write_jsonl
from admap.load import load_preferences
from admap.select import preference_pairs, trl_records
from admap_experiments.config import TrainOptions
from admap_experiments.random_policy import write_random_policy
from admap_experiments.train import dpo_arguments, train_dpo
from admap_experiments.weights import adamw_update_share, changed_share, checkpoint_weights

RECIPE_LEARNING_RATE = 5e-7


@pytest.fixture(scope="module")
def pairs_and_policy(tmp_path_factory, hh_rlhf_path):
    folder = tmp_path_factory.mktemp("precision")
    data = load_preferences(str(hh_rlhf_path), format="hh_rlhf", limit=24, progress=False)
    pairs = preference_pairs(data.responses, annotated=data.preferences)
    write_jsonl(trl_records(pairs, data.instructions, data.responses), folder / "pairs.jsonl")
    texts = list(data.instructions["instruction"]) + list(data.responses["response"])
    policy = write_random_policy(folder / "policy", texts, hidden_size=32, n_layers=2, n_heads=4)
    return folder, policy


def test_bf16_weights_lose_the_updates_fp32_weights_keep(pairs_and_policy):
    from transformers import AutoModelForCausalLM

    _, policy = pairs_and_policy
    model = AutoModelForCausalLM.from_pretrained(policy)
    fp32 = adamw_update_share(model, dtype=torch.float32, learning_rate=RECIPE_LEARNING_RATE, steps=3)
    bf16 = adamw_update_share(model, dtype=torch.bfloat16, learning_rate=RECIPE_LEARNING_RATE, steps=3)
    assert fp32 > 0.99 and bf16 < 0.05


@pytest.mark.slow
def test_dpo_under_bf16_autocast_changes_what_fp32_changes(pairs_and_policy, tmp_path):
    folder, policy = pairs_and_policy
    options = TrainOptions(
        model=str(policy),
        device="cpu",
        dpo={
            "bf16": True,
            "learning_rate": RECIPE_LEARNING_RATE,
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "max_length": 256,
        },
    )
    model_dir, metrics, margins = train_dpo(
        folder / "pairs.jsonl", options, out_dir=tmp_path, run_name="t", report_to=[]
    )
    trained = checkpoint_weights(model_dir)
    assert all(tensor.dtype == torch.float32 for tensor in trained.values())
    assert changed_share(checkpoint_weights(policy), trained) > 0.99
    assert metrics["train_steps"] == 3
    assert len(margins) == metrics["train_pairs"] and margins["margin"].notna().all()


def test_a_16_bit_policy_without_deepspeed_is_refused(tmp_path):
    options = TrainOptions(dpo={"model_init_kwargs": {"dtype": "bfloat16"}}, device="cpu")
    with pytest.raises(ValueError, match="fp32 master"):
        dpo_arguments(options, output_dir=tmp_path, run_name="t", report_to=[], device="cpu")
    assert (
        dpo_arguments(TrainOptions(), output_dir=tmp_path, run_name="t", report_to=[], device="cpu").model_init_kwargs[
            "dtype"
        ]
        == "float32"
    )
