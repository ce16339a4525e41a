"""Held-out preference accuracy: a policy whose log-probabilities are known, scored by hand; the held-out split."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from admap_experiments.evaluate.preference_accuracy import (
    PreferenceAccuracyOptions,
    bootstrap_interval,
    pair_outcomes,
    sequence_table,
    summarize,
)
from admap_experiments.held_out import held_out_ids, restrict, split

pytest.importorskip("tokenizers")

WORDS = ["<pad>", "user", "assistant", ":", ";", "hi", "yes", "no", "tea", "please", "maybe"]
# Every turn renders as "role : content ;", and the prompt for a reply ends "assistant :".
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} ; {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def word_tokenizer():
    """A real transformers tokenizer over a word vocabulary, with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


class BigramLM:
    """A causal LM whose next-token logits are a row of ``table`` picked by the current token: the
    log-probability of a sequence is a sum of known terms."""

    device = "cpu"

    def __init__(self, table: np.ndarray):
        import torch

        self.table = torch.tensor(table, dtype=torch.float32)

    def __call__(self, *, input_ids, attention_mask):
        return SimpleNamespace(logits=self.table[input_ids])


def by_hand(table: np.ndarray, tokens: list[str], completion: int) -> float:
    """Summed log-probability of the last ``completion`` tokens, each given the token before it."""
    ids = [WORDS.index(w) for w in tokens]
    total = 0.0
    for position in range(len(ids) - completion, len(ids)):
        row = table[ids[position - 1]]
        total += row[ids[position]] - np.log(np.exp(row).sum())
    return total


def record(prompt: str, chosen: str, rejected: str, number: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "instruction_id": f"i{number}",
        "chosen_id": f"c{number}",
        "rejected_id": f"r{number}",
    }


RECORDS = [
    record("hi", "yes", "no", 0),
    record("tea please", "yes please", "maybe", 1),
    record("hi tea", "no", "yes tea please", 2),
]


def tables(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, size=(len(WORDS), len(WORDS)))


def test_summed_log_probs_of_the_completion_are_the_known_ones():
    tokenizer, policy = word_tokenizer(), tables(0)
    options = PreferenceAccuracyOptions(batch_size=2)
    table = sequence_table(BigramLM(policy), tokenizer, RECORDS, options, max_length=64, progress=False)

    # "user : tea please ; assistant : yes please ;": the completion is "yes please ;" (3 tokens).
    expected = by_hand(policy, "user : tea please ; assistant : yes please ;".split(), 3)
    assert table.loc[1, "chosen_logp"] == pytest.approx(expected, abs=1e-5)
    assert table.loc[1, "chosen_tokens"] == 3
    expected = by_hand(policy, "user : hi tea ; assistant : yes tea please ;".split(), 4)
    assert table.loc[2, "rejected_logp"] == pytest.approx(expected, abs=1e-5)
    assert table["instruction_id"].tolist() == ["i0", "i1", "i2"]


def test_accuracies_and_margins_match_a_count_by_hand():
    tokenizer = word_tokenizer()
    policy, reference = tables(0), tables(1)
    options = PreferenceAccuracyOptions(batch_size=4, bootstrap=200)
    scored = {
        name: sequence_table(BigramLM(t), tokenizer, RECORDS, options, max_length=64, progress=False)
        for name, t in (("policy", policy), ("reference", reference))
    }
    outcomes = pair_outcomes(scored["policy"], scored["reference"], beta=0.5)

    texts = [("user : hi ; assistant :", "yes ;", "no ;"),
             ("user : tea please ; assistant :", "yes please ;", "maybe ;"),
             ("user : hi tea ; assistant :", "no ;", "yes tea please ;")]  # fmt: skip
    expected_margins, reward, logprob, per_token = [], [], [], []
    for prompt, chosen, rejected in texts:
        logp = {
            (name, side): by_hand(t, f"{prompt} {text}".split(), len(text.split()))
            for name, t in (("policy", policy), ("reference", reference))
            for side, text in (("chosen", chosen), ("rejected", rejected))
        }
        margin = 0.5 * ((logp["policy", "chosen"] - logp["reference", "chosen"])
                        - (logp["policy", "rejected"] - logp["reference", "rejected"]))  # fmt: skip
        expected_margins.append(margin)
        reward.append(float(margin > 0))
        logprob.append(float(logp["policy", "chosen"] > logp["policy", "rejected"]))
        per_token.append(
            float(logp["policy", "chosen"] / len(chosen.split()) > logp["policy", "rejected"] / len(rejected.split()))
        )
    np.testing.assert_allclose(outcomes["reward_margin"], expected_margins, atol=1e-5)

    row = summarize(outcomes, resamples=200, seed=0)
    assert row["held_out_pairs"] == 3
    assert row["preference_accuracy"] == pytest.approx(np.mean(reward))
    assert row["logprob_accuracy"] == pytest.approx(np.mean(logprob))
    assert row["logprob_accuracy_per_token"] == pytest.approx(np.mean(per_token))
    assert row["preference_margin"] == pytest.approx(np.mean(expected_margins), abs=1e-5)
    assert row["held_out_chosen_longer"] == pytest.approx(1 / 3)  # only "yes please ;" outnumbers its rival
    for name in ("preference_accuracy", "logprob_accuracy", "preference_margin"):
        assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"]


def test_the_untrained_policy_ties_every_pair_and_scores_one_half():
    tokenizer = word_tokenizer()
    table = sequence_table(
        BigramLM(tables(3)), tokenizer, RECORDS, PreferenceAccuracyOptions(), max_length=64, progress=False
    )
    outcomes = pair_outcomes(table, table.copy(), beta=0.1)
    assert (outcomes["reward_margin"] == 0).all()
    row = summarize(outcomes, resamples=100, seed=0)
    assert row["preference_accuracy"] == row["preference_accuracy_low"] == row["preference_accuracy_high"] == 0.5
    assert row["logprob_accuracy"] == row["reference_logprob_accuracy"]


def test_a_prompt_that_fills_max_length_drops_its_pair_and_long_completions_are_cut():
    tokenizer, policy = word_tokenizer(), tables(0)
    options = PreferenceAccuracyOptions()
    # Prompts: "user : hi ; assistant :" is 6 tokens, the other two 7. At 7 only the first leaves room, for one
    # token of each completion, as TRL keeps the start of a sequence and drops a pair whose prompt fills it.
    table = sequence_table(BigramLM(policy), tokenizer, RECORDS, options, max_length=7, progress=False)
    assert table["instruction_id"].tolist() == ["i0"]
    assert table["chosen_tokens"].tolist() == [1] and table["rejected_tokens"].tolist() == [1]
    assert table.loc[0, "chosen_logp"] == pytest.approx(by_hand(policy, "user : hi ; assistant : yes".split(), 1))

    empty = sequence_table(BigramLM(policy), tokenizer, RECORDS, options, max_length=6, progress=False)
    assert empty.empty and "chosen_logp" in empty.columns
    assert summarize(pair_outcomes(empty, empty, beta=0.1), resamples=10, seed=0) == {"held_out_pairs": 0}


def test_keep_end_keeps_every_pair_and_the_end_of_each_sequence():
    tokenizer, policy = word_tokenizer(), tables(0)
    table = sequence_table(
        BigramLM(policy),
        tokenizer,
        RECORDS,
        PreferenceAccuracyOptions(),
        max_length=4,
        truncation_mode="keep_end",
        progress=False,
    )
    assert table["instruction_id"].tolist() == ["i0", "i1", "i2"]
    # "... assistant : yes tea please ;" keeps its last 4 tokens, all of them the completion's; the first of
    # the window has nothing before it to be predicted from, so 3 are scored.
    assert table.loc[2, "rejected_tokens"] == 3
    assert table.loc[2, "rejected_logp"] == pytest.approx(by_hand(policy, "yes tea please ;".split(), 3))
    assert table.loc[0, "chosen_tokens"] == 2  # "yes ;" fits whole, after ": " of the prompt's end


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0])
    low, high = bootstrap_interval(values, resamples=500, seed=3)
    assert (low, high) == bootstrap_interval(values, resamples=500, seed=3)
    assert 0 <= low < values.mean() < high <= 1
    assert bootstrap_interval(np.full(10, 0.7), resamples=50, seed=0) == pytest.approx((0.7, 0.7))


def test_pairs_of_two_tables_must_agree():
    tokenizer = word_tokenizer()
    options = PreferenceAccuracyOptions()
    table = sequence_table(BigramLM(tables(0)), tokenizer, RECORDS, options, max_length=64, progress=False)
    with pytest.raises(ValueError, match="same pairs"):
        pair_outcomes(table, table.iloc[::-1].reset_index(drop=True), beta=0.1)


def test_held_out_ids_are_an_exact_share_that_does_not_depend_on_row_order():
    ids = pd.Series([f"id{i}" for i in range(200)])
    held = held_out_ids(ids, fraction=0.25, seed=7)
    assert len(held) == 50
    assert held == held_out_ids(ids.sample(frac=1, random_state=1), fraction=0.25, seed=7)
    assert held != held_out_ids(ids, fraction=0.25, seed=8)
    # A larger share keeps the smaller one: the order is a hash of the seed and the id.
    assert held <= held_out_ids(ids, fraction=0.5, seed=7)


def test_split_leaves_no_held_out_instruction_in_the_pool_and_counts_them():
    from admap.load import load_preferences

    data = load_preferences(
        "tests/data/hh_rlhf/harmless-base-test.jsonl.gz", skip_invalid=True, progress=False, limit=80
    )
    pool, held = split(data, fraction=0.25, seed=0)
    pool_ids, held_ids = set(pool.instructions["instruction_id"]), set(held.instructions["instruction_id"])
    assert len(held_ids) == round(0.25 * len(data.instructions)) and not pool_ids & held_ids
    assert pool_ids | held_ids == set(data.instructions["instruction_id"])
    for part, ids in ((pool, pool_ids), (held, held_ids)):
        assert set(part.responses["instruction_id"]) <= ids and set(part.preferences["instruction_id"]) <= ids
    assert len(pool.responses) + len(held.responses) == len(data.responses)
    assert pool.tally.notes["held_out_instructions"] == len(held_ids)
    assert restrict(data, set(), keep=False, reason="none").instructions.equals(data.instructions)
