"""The reward scorer, offline: a small reward model made from the packaged SmolLM2 with a fresh score head."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from progress_bars import record_bars

from admap.score import SCORERS, ScoringContext
from admap.score.reward import RewardOptions, RewardScorer


def test_reward_is_registered():
    assert "reward" in SCORERS
    assert SCORERS.get("reward") is RewardScorer
    assert not RewardScorer.needs_proxy


def test_from_options_without_a_reward_model_names_the_option():
    context = ScoringContext(device="cpu", progress=False)
    with pytest.raises(ValueError, match="--reward-model"):
        RewardScorer.from_options(RewardOptions(model=None, batch_size=8), context)
    scorer = RewardScorer.from_options(RewardOptions(model="some/rm", batch_size=4, trust_remote_code=True), context)
    assert (scorer.model, scorer.batch_size, scorer.device, scorer.trust_remote_code) == ("some/rm", 4, "cpu", True)
    assert scorer.label() == "reward (some/rm)" and scorer.report() == {"model": "some/rm"}


def test_from_map_config_without_a_reward_model_raises():
    from admap.commands.map import MapConfig

    with pytest.raises(ValueError, match="--reward-model"):
        MapConfig(scorer="reward").build_scorer(progress=False)


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory) -> str:
    """SmolLM2-135M-Instruct with a seeded, freshly initialised one-label score head, saved once."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from admap.models import materialize_gguf, resolve_generator_model

    source = materialize_gguf(*resolve_generator_model("smollm2"))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.config.pad_token_id = tokenizer.pad_token_id
    target = tmp_path_factory.mktemp("reward_model")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


# Real conversations cut to their last 192 tokens: the slow tests stay quick on two CPU cores, and the
# longer HH-RLHF conversations exercise left truncation on real data.
MAX_LENGTH = 192


@pytest.fixture(scope="module")
def scorer(reward_model_dir) -> RewardScorer:
    return RewardScorer(model=reward_model_dir, batch_size=8, max_length=MAX_LENGTH, device="cpu", progress=False)


@pytest.fixture(scope="module")
def single_scorer(reward_model_dir) -> RewardScorer:
    return RewardScorer(model=reward_model_dir, batch_size=1, max_length=MAX_LENGTH, device="cpu", progress=False)


def _subset(data, n_responses: int):
    """The first ``n_responses`` responses and their instructions."""
    responses = data.responses.head(n_responses).reset_index(drop=True)
    instructions = data.instructions[data.instructions["instruction_id"].isin(responses["instruction_id"])]
    return instructions.reset_index(drop=True), responses


@pytest.fixture(scope="module")
def demo_subset():
    from admap.inputs import demo_dataset_path
    from admap.load import load_preferences

    return _subset(load_preferences(demo_dataset_path(), progress=False), 12)


@pytest.fixture(scope="module")
def hh_subset(hh_rlhf_path):
    from admap.load import load_preferences

    return _subset(load_preferences(str(hh_rlhf_path), skip_invalid=True, limit=12, progress=False), 12)


@pytest.fixture(scope="module")
def demo_scores(scorer, demo_subset) -> np.ndarray:
    return scorer.score(*demo_subset)


@pytest.fixture(scope="module")
def hh_scores(scorer, hh_subset) -> np.ndarray:
    return scorer.score(*hh_subset)


@pytest.fixture(scope="module")
def hand_model(reward_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir, dtype=torch.float32).eval()
    return model, tokenizer


def _hand_score(hand_model, messages: list[dict], max_length: int) -> float:
    """One conversation through the model, unbatched and unpadded, cut to its last ``max_length``
    tokens: the pooled first logit."""
    import torch

    model, tokenizer = hand_model
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -max_length:]
    with torch.inference_mode():
        return float(model(input_ids=ids).logits[0, 0])


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["demo", "hh"])
def test_reward_scores_are_finite_deterministic_and_batch_invariant(request, scorer, single_scorer, dataset):
    instructions, responses = request.getfixturevalue(f"{dataset}_subset")
    first = request.getfixturevalue(f"{dataset}_scores")  # batch size 8
    assert len(responses) == 12
    assert first.dtype == np.float32 and first.shape == (len(responses),)
    assert np.isfinite(first).all()
    assert np.unique(first).size > 1  # the head tells responses apart
    np.testing.assert_array_equal(scorer.score(instructions, responses), first)
    # One at a time nothing is padded: equal scores mean that the batched runs pool the right token.
    # The rows are shuffled too: scores stay aligned with the responses' rows, whatever their order.
    shuffled = responses.sample(frac=1.0, random_state=0)
    expected = pd.Series(first, index=responses.index)[shuffled.index].to_numpy()
    np.testing.assert_allclose(single_scorer.score(instructions, shuffled), expected, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("position", [3, 4])  # 226 tokens, cut to 192; 186 tokens, whole
def test_reward_equals_a_hand_computation(hand_model, hh_subset, hh_scores, position):
    instructions, responses = hh_subset
    row = responses.iloc[position]
    prompt = instructions.set_index("instruction_id").loc[row["instruction_id"], "prompt_messages"]
    messages = [*json.loads(prompt), {"role": "assistant", "content": row["response"]}]
    expected = _hand_score(hand_model, messages, MAX_LENGTH)
    assert hh_scores[position] == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_unknown_instructions_are_nan_and_empty_responses_are_scored(scorer, demo_subset):
    instructions, responses = demo_subset
    responses = responses.head(3).copy()
    responses.loc[0, "instruction_id"] = "no-such-instruction"
    responses.loc[1, "response"] = "   "
    scores = scorer.score(instructions, responses)
    assert np.isnan(scores[0])
    assert np.isfinite(scores[1:]).all()
    assert scorer.score(instructions, responses.iloc[:0]).shape == (0,)


@pytest.mark.slow
def test_left_truncation_keeps_the_response(reward_model_dir, hand_model, monkeypatch):
    long_prompt = " ".join(f"word{i}" for i in range(3000))
    instructions = pd.DataFrame(
        {
            "instruction_id": ["i"],
            "prompt_messages": [json.dumps([{"role": "user", "content": long_prompt}])],
        }
    )
    responses = pd.DataFrame(
        {
            "instruction_id": ["i", "i"],
            "response_id": ["a", "b"],
            "response": ["Paris is the capital of France.", "I do not know, sorry."],
        }
    )
    bars = record_bars(monkeypatch)
    scorer = RewardScorer(model=reward_model_dir, max_length=48, batch_size=2, device="cpu")
    _, tokenizer = scorer.load()
    ids = scorer.encode(
        [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "Paris!"}], tokenizer
    )
    assert len(ids) == 48 and "Paris!" in tokenizer.decode(ids)
    scores = scorer.score(instructions, responses)
    assert np.isfinite(scores).all()
    assert abs(scores[0] - scores[1]) > 1e-4
    assert [(bar.total, bar.updates) for bar in bars] == [(2, [2])]  # one bar over the responses
    # The same as the model on the last 48 tokens of the whole conversation.
    messages = [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": responses["response"][0]}]
    assert scores[0] == pytest.approx(_hand_score(hand_model, messages, max_length=48), abs=1e-4)


def test_render_uses_the_chat_template_else_plain_lines():
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": ""}]
    plain = SimpleNamespace(chat_template=None)
    scorer = RewardScorer(model="some/rm")
    assert scorer.render(messages, plain) == ("User: Hi?\nAssistant: ", True)
    templated = SimpleNamespace(
        chat_template="...", apply_chat_template=lambda m, tokenize: "".join(f"<{x['role']}>{x['content']}" for x in m)
    )
    assert scorer.render(messages, templated) == ("<user>Hi?<assistant>", False)
