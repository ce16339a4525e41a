"""The authors' evaluation protocol up to the network boundary: a baseline model (FastChat's default,
gpt-3.5-turbo) answers MT-Bench and Evol-Instruct through the OpenAI-compatible client, once and cached;
the policy is graded single-answer and pairwise against it on MT-Bench (``mt_bench_mode: both``) and
pairwise on Evol-Instruct, both orders, by a judge behind the same loopback server. The win rates are
checked against a count by hand."""

import json

import pytest

from admap.config import build
from admap_experiments.evaluate.answers import answer_file, answer_turns, read_answers
from admap_experiments.evaluate.data import read_evol_instruct, read_questions
from admap_experiments.evaluate.stages import evaluate_policy, reference_answers
from benchmarks import chat_server as chat_server_module

pytest.importorskip("trl")
from admap_experiments.config import ExperimentConfig  # noqa: E402

# What the policy's answer says decides the loopback judge: GOOD beats the baseline's PLAIN, BAD loses
# to it, PLAIN ties. MT-Bench's first four questions (writing: no reference answer in the prompt).
MT_BENCH_OUTCOMES = ["GOOD", "BAD", "PLAIN", "GOOD"]
EVOL_OUTCOMES = ["GOOD", "GOOD", "BAD", "PLAIN"]


def loopback(messages, max_tokens=None):
    """A GPT-4-style judge for judge prompts, a baseline model for anything else."""
    prompt = messages[-1]["content"]
    if "Assistant B" in prompt:
        if "GOOD" in prompt:
            winner = "A" if prompt.index("GOOD") < prompt.index("PLAIN") else "B"
        elif "BAD" in prompt:
            winner = "B" if prompt.index("BAD") < prompt.index("PLAIN") else "A"
        else:
            winner = "C"
        return f"Both answers considered.\n\n[[{winner}]]"
    if "[[rating]]" in prompt:
        return "Relevant and clear.\n\nRating: [[7]]"
    return f"PLAIN baseline answer to: {' '.join(prompt.split()[:6])}"


def policy_record(question, outcome):
    turns = [f"{outcome} policy answer, turn {k + 1}." for k in range(len(question.turns))]
    return {"question_id": question.question_id, "model_id": "policy", "choices": [{"index": 0, "turns": turns}]}


def win_rate_by_hand(outcomes, turns):
    wins, losses = outcomes.count("GOOD") * turns, outcomes.count("BAD") * turns
    ties = outcomes.count("PLAIN") * turns
    return (wins + 0.5 * ties) / (wins + ties + losses), (wins, ties, losses)


def test_single_and_pairwise_against_a_generated_baseline(tmp_path, chat_server, monkeypatch, mt_bench_dir, evol_path):
    monkeypatch.setattr(chat_server_module, "reply_text", loopback)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-admap-test")
    api = {"generator": "openai", "base_url": chat_server.url, "max_retries": 0, "cache_dir": str(tmp_path / "cache")}
    evaluation = {
        "mt_bench": str(mt_bench_dir),
        "mt_bench_questions": 4,
        "mt_bench_mode": "both",
        "evol_instruct": str(evol_path),
        "evol_instruct_questions": 4,
        "reference_answers": "baseline",
        "baseline": api,
        "judge": "generate",
        "judge_generation": {**api, "generator_model": "gpt-4o-2024-11-20"},
    }
    config = build(ExperimentConfig, {"name": "protocol", "out": str(tmp_path), "evaluation": evaluation})
    assert config.evaluation.baseline.generator_model == "gpt-3.5-turbo"

    reference = reference_answers(config, "unused-base-checkpoint", tmp_path / "reference", progress=False)
    questions = {
        "mt_bench": read_questions(mt_bench_dir)[:4],
        "evol_instruct": read_evol_instruct(evol_path)[:4],
    }
    asked = len(chat_server.requests)
    assert asked == 4 * 2 + 4  # every turn of every question, once
    for records in reference.values():
        assert [r["model_id"] for r in records] == ["gpt-3.5-turbo"] * 4
        assert all(turn.startswith("PLAIN baseline answer") for r in records for turn in r["choices"][0]["turns"])
    # The baseline's requests carried FastChat's system prompt and 1024 new tokens.
    first = chat_server.requests[0].body
    assert first["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert first["max_tokens"] == 1024 and first["model"] == "gpt-3.5-turbo"

    # Asked again: the answer files are complete; without them, every request is a cache hit.
    def turns(answers):
        return {name: [answer_turns(r) for r in records] for name, records in answers.items()}

    assert reference_answers(config, "unused", tmp_path / "reference", progress=False) == reference
    assert turns(reference_answers(config, "unused", tmp_path / "elsewhere", progress=False)) == turns(reference)
    assert len(chat_server.requests) == asked

    eval_dir = tmp_path / "run" / "eval"
    for name, outcomes in (("mt_bench", MT_BENCH_OUTCOMES), ("evol_instruct", EVOL_OUTCOMES)):
        path = answer_file(eval_dir / name, "policy")
        path.parent.mkdir(parents=True)
        records = [policy_record(q, o) for q, o in zip(questions[name], outcomes)]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        assert len(read_answers(path)) == 4

    row = evaluate_policy(
        config, tmp_path / "run" / "model", eval_dir, reference=reference, stages=["judge"], progress=False
    )
    assert row["mt_bench_score"] == 7.0  # single-answer grading ran too
    mt_rate, mt_counts = win_rate_by_hand(MT_BENCH_OUTCOMES, turns=2)
    assert (row["mt_bench_pair_wins"], row["mt_bench_pair_ties"], row["mt_bench_pair_losses"]) == mt_counts
    assert row["mt_bench_pair_win_rate"] == pytest.approx(mt_rate) == 0.625
    evol_rate, evol_counts = win_rate_by_hand(EVOL_OUTCOMES, turns=1)
    assert (row["evol_wins"], row["evol_ties"], row["evol_losses"]) == evol_counts
    assert row["evol_win_rate"] == pytest.approx(evol_rate) == 0.625
    assert row["mt_bench_pair_inconsistent"] == row["evol_inconsistent"] == 0
    # Every pairwise judgment was asked in both orders, and names the baseline as model_2.
    judgments = [
        json.loads(line) for line in (eval_dir / "mt_bench" / "model_judgment" / "gpt-4o-2024-11-20_pair.jsonl").open()
    ]
    assert len(judgments) == 8 and {r["model_2"] for r in judgments} == {"gpt-3.5-turbo"}
    pair_requests = [r for r in chat_server.requests if "Assistant B" in r.prompt]
    assert len(pair_requests) == 2 * (4 * 2 + 4)
