"""experiments/evaluate: benchmark files, answers, verdict parsing, win rates, MT-Bench and Evol-Instruct judging."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from admap.errors import InputError
from admap.generate.base import Completion
from admap.generate.openai_api import OpenAIGenerator
from admap.generate.options import GeneratorOptions
from admap_experiments.evaluate import (
    ERROR_MARKER,
    JUDGES,
    PAIR_VERDICTS,
    SINGLE_VERDICTS,
    GenerateJudge,
    Question,
    Verdict,
    aggregate_single,
    alpaca_eval_outputs,
    answer_file,
    build_judge,
    combine_orders,
    generate_answers,
    judgment_file,
    load_alpaca_eval_instructions,
    order_winner,
    parse_verdict,
    read_answers,
    read_evol_instruct,
    read_judge_prompts,
    read_questions,
    read_reference_answers,
    run_alpaca_eval,
    run_evol_instruct,
    run_mt_bench,
    select_questions,
    win_rate,
    write_alpaca_eval_outputs,
    write_jsonl,
)
from admap_experiments.evaluate.mt_bench import pair_conversation, single_conversation
from benchmarks import chat_server as chat_server_module

FAKE_KEY = "sk-admap-FAKE-evaluate-0123456789"


@pytest.fixture(scope="session")
def mt_bench(mt_bench_dir):
    return read_questions(mt_bench_dir), read_reference_answers(mt_bench_dir), read_judge_prompts(mt_bench_dir)


def question(mt_bench, question_id):
    return next(q for q in mt_bench[0] if q.question_id == question_id)


def answer_record(question_id, turns, model_id="policy"):
    return {
        "question_id": question_id,
        "answer_id": f"a{question_id}",
        "model_id": model_id,
        "choices": [{"index": 0, "turns": list(turns)}],
        "tstamp": 0.0,
    }


@dataclass
class ScriptedGenerator:
    """A generator whose reply is ``reply(conversation)``; None fails that request. Records every call."""

    reply: object
    name: str = "scripted"
    model: str = "scripted-model"
    calls: list = field(default_factory=list)

    @property
    def deterministic(self) -> bool:
        return True

    def identity(self) -> dict:
        return {"generator": self.name, "model": self.model}

    def generate(self, conversations, *, on_result=None):
        self.calls.append([list(c) for c in conversations])
        results = []
        for conversation in conversations:
            text = self.reply(conversation)
            results.append(Completion(text=text, error=None if text is not None else "scripted failure"))
        return results


@dataclass
class ScriptedJudge:
    """A judge that answers ``verdict_for(conversation)`` (a Verdict) and records what it was asked."""

    verdict_for: object
    name: str = "scripted"
    model: str = "judge-model"
    asked: list = field(default_factory=list)

    def judge(self, conversations, *, verdicts):
        self.asked.append((list(conversations), tuple(verdicts)))
        return [self.verdict_for(c) for c in conversations]


# --- Data ------------------------------------------------------------------------------------------------------


def test_real_mt_bench_files(mt_bench):
    questions, references, prompts = mt_bench
    assert len(questions) == 80 and all(len(q.turns) == 2 for q in questions)
    assert {q.category for q in questions} == {
        "writing",
        "roleplay",
        "reasoning",
        "math",
        "coding",
        "extraction",
        "stem",
        "humanities",
    }
    # GPT-4 reference answers exist for exactly the categories FastChat judges with them.
    needing = {q.question_id for q in questions if q.category in ("math", "reasoning", "coding")}
    assert set(references) == needing and len(needing) == 30
    assert references[111] == tuple(references[111]) and len(references[111]) == 2
    assert set(prompts) == {
        "single-v1",
        "single-math-v1",
        "single-v1-multi-turn",
        "single-math-v1-multi-turn",
        "pair-v2",
        "pair-math-v1",
        "pair-v2-multi-turn",
        "pair-math-v1-multi-turn",
    }
    assert prompts["pair-v2"].type == "pairwise" and prompts["single-v1"].output_format == "[[rating]]"


def test_real_evol_instruct_file(evol_path):
    questions = read_evol_instruct(evol_path)
    assert len(questions) == 218
    assert [q.question_id for q in questions[:3]] == [1, 2, 3]
    assert questions[0].category == "Math" and len(questions[0].turns) == 1
    assert read_evol_instruct(evol_path.parent) == questions  # the folder works too


def test_select_questions(mt_bench):
    questions = mt_bench[0]
    assert [q.question_id for q in select_questions(questions, limit=3)] == [81, 82, 83]
    math_only = select_questions(questions, categories=["math"])
    assert len(math_only) == 10 and {q.category for q in math_only} == {"math"}
    assert [q.question_id for q in select_questions(questions, question_ids=[111, 81])] == [81, 111]
    assert len(select_questions(questions, categories=["math", "coding"], limit=12)) == 12
    with pytest.raises(ValueError, match="did you mean 'math'"):
        select_questions(questions, categories=["maths"])
    with pytest.raises(ValueError, match="unknown question ids"):
        select_questions(questions, question_ids=[9999])
    with pytest.raises(ValueError, match="limit"):
        select_questions(questions, limit=0)


def write_lines(path: Path, lines) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


QUESTION = {"question_id": 1, "category": "math", "turns": ["q"]}
PROMPT = {"name": "p", "type": "single", "system_prompt": "", "prompt_template": "t", "output_format": "[[A]]"}
REFERENCE = {"question_id": 1, "choices": [{"index": 0, "turns": ["a"]}]}


def without(record, key):
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize(
    ("reader", "lines", "row", "field_name"),
    [
        (read_questions, [QUESTION, without({**QUESTION, "question_id": 2}, "category")], 2, "category"),
        (read_questions, [{**QUESTION, "turns": []}], 1, "turns"),
        (read_questions, [{**QUESTION, "turns": ["q", ""]}], 1, "turns[1]"),
        (read_questions, [QUESTION, QUESTION], 2, "question_id"),  # a duplicate
        (read_questions, [{**QUESTION, "question_id": 1.5}], 1, "question_id"),
        (read_reference_answers, [REFERENCE, {"question_id": 2, "choices": []}], 2, "choices"),
        (read_judge_prompts, [{**PROMPT, "type": "triple"}], 1, "type"),
        (read_judge_prompts, [without(PROMPT, "prompt_template")], 1, "prompt_template"),
        (read_evol_instruct, [{"idx": 1, "Instruction": "Add."}, {"idx": 2, "Skill": "Math"}], 2, "Instruction"),
        (
            read_answers,
            [answer_record(1, ["a"]), {**answer_record(2, []), "choices": [{"turns": "a"}]}],
            2,
            "choices[0].turns",
        ),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, reader, lines, row, field_name):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(InputError) as caught:
        reader(path)
    assert (caught.value.file, caught.value.row, caught.value.field) == (str(path), row, field_name)
    assert str(path) in str(caught.value) and f"row {row}" in str(caught.value)


def test_unreadable_lines_and_missing_paths(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", [{"question_id": 1, "category": "x", "turns": ["q"]}, "", "{not json"])
    with pytest.raises(InputError, match="row 3: not JSON"):
        read_questions(path)
    with pytest.raises(InputError, match="row 1: a JSON list, not an object"):
        read_questions(write_lines(tmp_path / "list.jsonl", ["[1, 2]"]))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_questions(tmp_path / "absent.jsonl")
    with pytest.raises(FileNotFoundError, match="has no question.jsonl"):
        read_questions(tmp_path)


def test_hub_id_offline_is_a_clear_error():
    # conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE: the hub error surfaces, wrapped.
    with pytest.raises(InputError, match="HuggingFaceH4/mt_bench_prompts: not a local path, and loading it"):
        read_questions("HuggingFaceH4/mt_bench_prompts")


# --- Verdicts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is correct and concise.\n\nRating: [[8]]", "8"),
        ("[[10]]", "10"),
        ("Rating: [[6.5]]", "6.5"),
        ("Rating: [[4]]\n\nOn reflection the code has a bug. Rating: [[3]]", "3"),  # the last verdict wins
        ('I must follow this format: "[[rating]]", for example: "Rating: [[5]]".\n\nRating: [[7]]', "7"),
        ("**Rating:** 7/10", "7"),  # parse_rating's variants
        ("Rating: [[11]]", None),  # out of range: refused, not clipped
        ("Rating: [[0]]", None),
        ("The response is fine.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rating_verdicts(text, expected):
    assert parse_verdict(text, SINGLE_VERDICTS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Assistant A is more accurate.\n\n[[A]]", "A"),
        ("[[B]]", "B"),
        ("Both are equally good. [[C]]", "C"),
        ("Final verdict: [[ B ]]", "B"),
        ("Final verdict: [[**A**]]", "A"),
        # Quoting the format first, then the verdict: the last one wins (FastChat's "in" test would say A).
        ('Format: "[[A]]" if assistant A is better, "[[B]]" if B, "[[C]]" for a tie.\n\nMy verdict: [[B]]', "B"),
        ("[[A]] at first sight, but after checking the math: [[B]]", "B"),
        ("Assistant A is better.", None),
        ("[A]", None),
        ("[[D]]", None),
        ("[[a]]", None),
        (None, None),
    ],
)
def test_parse_pairwise_verdicts(text, expected):
    assert parse_verdict(text, PAIR_VERDICTS) == expected


def test_verdict_rating_and_expected_rating():
    verdict = Verdict("Rating: [[7]]", "7", {"1": 0.2, "7": 0.5, "10": 0.3})
    assert verdict.rating == 7.0
    assert verdict.expected_rating == pytest.approx(0.2 * 1 + 0.5 * 7 + 0.3 * 10)
    assert Verdict("x", None).rating is None and Verdict("x", "7").expected_rating is None
    assert Verdict("[[A]]", "A", {"A": 0.6, "B": 0.3, "C": 0.1}).expected_rating is None


def test_judge_registry():
    assert JUDGES.names() == ["generate", "logprob"]
    with pytest.raises(KeyError, match="did you mean 'logprob'"):
        JUDGES.get("logprobs")
    with pytest.raises(ValueError, match="local transformers model"):
        build_judge("logprob", GeneratorOptions(generator="openai"))


# --- Win rates -------------------------------------------------------------------------------------------------


def test_order_winner_and_combination():
    assert [order_winner(v, model_is_a=True) for v in ("A", "B", "C", None)] == ["model", "baseline", "tie", None]
    assert [order_winner(v, model_is_a=False) for v in ("A", "B", "C")] == ["baseline", "model", "tie"]
    assert combine_orders("model", "model") == "model"
    assert combine_orders("baseline", "baseline") == "baseline"
    assert combine_orders("model", "baseline") == "tie"  # inconsistent orders: a tie, as in FastChat
    assert combine_orders("model", "tie") == "tie"
    assert combine_orders("tie", "tie") == "tie"
    assert combine_orders("model", None) is None
    with pytest.raises(ValueError, match="A, B or C"):
        order_winner("D", model_is_a=True)


def verdict_pairs(pairs):
    """Raw verdicts (model as A, then model as B) to per-order winners."""
    return [(order_winner(a, model_is_a=True), order_winner(b, model_is_a=False)) for a, b in pairs]


def test_win_rate_by_hand():
    # (model as A, model as B): win, loss, inconsistent, tie, unparsed, inconsistent, inconsistent.
    pairs = verdict_pairs([("A", "B"), ("B", "A"), ("A", "A"), ("C", "C"), ("A", None), ("B", "B"), ("A", "C")])
    rate = win_rate(pairs)
    assert (rate.wins, rate.ties, rate.losses, rate.unparsed, rate.inconsistent) == (1, 4, 1, 1, 3)
    # Scores 1, 0, .5, .5, .5, .5: mean 0.5; squared deviations sum to 0.5, so the variance is 0.5 / 5.
    assert rate.win_rate == pytest.approx(0.5)
    assert rate.win_rate_se == pytest.approx(math.sqrt(0.1 / 6))
    # Per order, over that order's parsed verdicts: A B A C A B A with the model first: 4.5 / 7;
    # B A A C - B C with the model second: 1 + 0 + 0 + .5 + 1 + .5 = 3 of 6.
    assert rate.win_rate_model_first == pytest.approx(4.5 / 7)
    assert rate.win_rate_model_second == pytest.approx(0.5)
    assert rate.to_dict("evol")["evol_wins"] == 1 and set(rate.to_dict("evol")) >= {
        "evol_win_rate",
        "evol_win_rate_se",
        "evol_ties",
        "evol_losses",
        "evol_unparsed",
    }


def test_win_rate_position_bias_and_swapped_orders():
    # A judge that always says A: every comparison is inconsistent, hence a tie; the per-order rates show why.
    biased = win_rate(verdict_pairs([("A", "A")] * 4))
    assert (biased.wins, biased.ties, biased.losses, biased.inconsistent) == (0, 4, 0, 4)
    assert biased.win_rate == 0.5 and biased.win_rate_se == 0.0
    assert (biased.win_rate_model_first, biased.win_rate_model_second) == (1.0, 0.0)
    # Swapping the two models swaps wins and losses and mirrors the rate.
    pairs = [("A", "B"), ("A", "B"), ("B", "A"), ("C", "C")]
    ours, theirs = win_rate(verdict_pairs(pairs)), win_rate(verdict_pairs([(b, a) for a, b in pairs]))
    assert (ours.wins, ours.losses, theirs.wins, theirs.losses) == (2, 1, 1, 2)
    assert ours.win_rate == pytest.approx(1 - theirs.win_rate) == pytest.approx(2.5 / 4)
    nothing = win_rate(verdict_pairs([(None, "A")]))
    assert nothing.unparsed == 1 and math.isnan(nothing.win_rate) and math.isnan(nothing.win_rate_se)


# --- Judge prompts ---------------------------------------------------------------------------------------------


def test_single_prompts_math_reference_and_multi_turn(mt_bench):
    _, references, prompts = mt_bench
    math_question, writing = question(mt_bench, 111), question(mt_bench, 81)
    answer = ["The area is 3.", "The circle's area is 5 pi."]

    turn1 = single_conversation(math_question, answer, turn=1, prompt=prompts["single-math-v1"], references=references)
    assert turn1[0] == {"role": "system", "content": prompts["single-math-v1"].system_prompt}
    text = turn1[1]["content"]
    assert math_question.turns[0] in text and answer[0] in text and references[111][0] in text
    assert math_question.turns[1] not in text and "[The Start of Reference Answer]" in text

    turn2 = single_conversation(
        math_question, answer, turn=2, prompt=prompts["single-math-v1-multi-turn"], references=references
    )[1]["content"]
    for part in (*math_question.turns, *answer, *references[111]):
        assert part in turn2
    # The assistant's conversation (after the reference one) is in order: question 1, answer 1, question 2, answer 2.
    conversation = turn2[turn2.index("<|The Start of Assistant A's Conversation") :]
    parts = (math_question.turns[0], answer[0], math_question.turns[1], answer[1])
    positions = [conversation.index(part) for part in parts]
    assert positions == sorted(positions)

    plain = single_conversation(writing, answer, turn=2, prompt=prompts["single-v1-multi-turn"])[1]["content"]
    assert all(part in plain for part in (*writing.turns, *answer)) and "Reference" not in plain

    with pytest.raises(ValueError, match="question 111 .* needs a reference answer"):
        single_conversation(math_question, answer, turn=1, prompt=prompts["single-math-v1"], references={})


def test_pair_prompts_put_a_before_b(mt_bench):
    _, references, prompts = mt_bench
    math_question = question(mt_bench, 111)
    a, b = ["A says 3.", "A says 5 pi."], ["B says 4.", "B says 2 pi."]
    text = pair_conversation(
        math_question, a, b, turn=2, prompt=prompts["pair-math-v1-multi-turn"], references=references
    )
    content = text[1]["content"]
    assert all(part in content for part in (*a, *b, *references[111]))
    assert content.index(a[1]) < content.index(b[0])  # assistant A's whole conversation comes first
    swapped = pair_conversation(math_question, b, a, turn=1, prompt=prompts["pair-math-v1"], references=references)
    assert swapped[1]["content"].index(b[0]) < swapped[1]["content"].index(a[0])


# --- Answers ---------------------------------------------------------------------------------------------------


def echo(conversation):
    return f"answer to: {conversation[-1]['content']}"


def test_answers_multi_turn_order_and_format():
    questions = [Question(1, "writing", ("Write a poem.", "Make it shorter.")), Question(2, "math", ("2+2?",))]
    generator = ScriptedGenerator(echo)
    records = generate_answers(questions, generator, model_id="policy", system_prompt="Be brief.")

    # One call per turn, batching every question that has that turn.
    assert len(generator.calls) == 2 and [len(c) for c in generator.calls] == [2, 1]
    assert generator.calls[0][0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write a poem."},
    ]
    # Turn 2 sees the model's own turn-1 answer.
    assert generator.calls[1][0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write a poem."},
        {"role": "assistant", "content": "answer to: Write a poem."},
        {"role": "user", "content": "Make it shorter."},
    ]
    first = records[0]
    assert set(first) >= {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert first["model_id"] == "policy" and first["choices"] == [
        {"index": 0, "turns": ["answer to: Write a poem.", "answer to: Make it shorter."]}
    ]
    assert records[1]["choices"][0]["turns"] == ["answer to: 2+2?"] and records[1]["turn_errors"] == [None]


def test_failed_turns_are_marked_counted_and_stop_the_conversation(caplog):
    questions = [Question(1, "x", ("fail me", "next")), Question(2, "x", ("fine", "also fine"))]
    generator = ScriptedGenerator(lambda c: None if c[-1]["content"] == "fail me" else echo(c))
    records = generate_answers(questions, generator, model_id="policy")
    assert records[0]["choices"][0]["turns"] == [ERROR_MARKER, ERROR_MARKER]
    assert records[0]["turn_errors"] == ["scripted failure", "an earlier turn failed"]
    assert [len(c) for c in generator.calls] == [2, 1]  # question 1's second turn is never asked
    assert records[1]["choices"][0]["turns"] == ["answer to: fine", "answer to: also fine"]
    assert "2 of 4 new answer turns failed" in caplog.text


def test_resume_keeps_answers_and_retries_failures(tmp_path):
    questions = [Question(i, "x", (f"q{i}", f"r{i}")) for i in (3, 1, 2)]
    path = answer_file(tmp_path, "org/policy-7b")
    assert path == tmp_path / "model_answer" / "org_policy-7b.jsonl"
    first = generate_answers(
        questions[:2],
        ScriptedGenerator(lambda c: None if c[-1]["content"] == "q1" else echo(c)),
        model_id="m",
        path=path,
    )
    assert [r["question_id"] for r in read_answers(path)] == [1, 3]  # sorted by question id, as FastChat does
    assert first[1]["choices"][0]["turns"][0] == ERROR_MARKER

    generator = ScriptedGenerator(echo)
    records = generate_answers(questions, generator, model_id="m", path=path)
    asked = {c[-1]["content"] for call in generator.calls for c in call}
    assert asked == {"q1", "r1", "q2", "r2"}  # question 3 was answered already; question 1 had failed
    assert records[0] == first[0]  # question 3 kept as it was
    assert [r["question_id"] for r in read_answers(path)] == [1, 2, 3]
    assert all(ERROR_MARKER not in r["choices"][0]["turns"] for r in read_answers(path))
    with pytest.raises(ValueError, match="holds answers of \\['m'\\], not of 'other'"):
        generate_answers(questions, generator, model_id="other", path=path)


def test_read_real_reference_answers_as_answer_records(mt_bench_dir):
    records = read_answers(mt_bench_dir / "reference_answer" / "gpt-4.jsonl")
    assert len(records) == 30 and {r["model_id"] for r in records} == {"gpt-4"}


# --- MT-Bench and Evol-Instruct judging ---------------------------------------------------------------------------


def scripted_rating(conversation):
    """8 for math prompts (they show a reference), 6 for the others, unparsable for the answer "ramble"."""
    text = conversation[-1]["content"]
    if "ramble" in text:
        return Verdict("I cannot decide.", None)
    return Verdict("Rating: [[8]]", "8") if "Reference" in text else Verdict("Rating: [[6]]", "6")


def test_mt_bench_single_records_and_aggregate(tmp_path, mt_bench):
    questions = [question(mt_bench, 81), question(mt_bench, 111), question(mt_bench, 82)]
    answers = [
        answer_record(81, ["A poem.", "A shorter poem."]),
        answer_record(111, ["3", "ramble"]),
        answer_record(82, [ERROR_MARKER, ERROR_MARKER]),
    ]
    judge = ScriptedJudge(scripted_rating)
    result = run_mt_bench(
        answers, questions=questions, references=mt_bench[1], prompts=mt_bench[2], judge=judge, out_dir=tmp_path
    )
    # Judged: 81/1 -> 6, 81/2 -> 6, 111/1 -> 8, 111/2 unparsable; question 82 failed: not sent to the judge.
    assert len(judge.asked) == 1 and len(judge.asked[0][0]) == 4 and judge.asked[0][1] == SINGLE_VERDICTS
    assert result["mt_bench_score"] == pytest.approx(20 / 3)
    assert result["mt_bench_score_se"] == pytest.approx(math.sqrt((2 * (2 / 3) ** 2 + (4 / 3) ** 2) / 2 / 3))
    assert (result["mt_bench_turn1"], result["mt_bench_turn2"]) == (pytest.approx(7.0), 6.0)
    assert math.isnan(result["mt_bench_turn2_se"])  # one parsed turn-2 judgment
    assert (result["mt_bench_writing"], result["mt_bench_math"]) == (6.0, 8.0)
    assert (result["mt_bench_judged"], result["mt_bench_unparsed"], result["mt_bench_answer_errors"]) == (3, 1, 2)
    assert result["mt_bench_questions"] == 3 and "mt_bench_expected_score" not in result

    path = judgment_file(tmp_path, "judge-model", "single")
    assert path == tmp_path / "model_judgment" / "judge-model_single.jsonl"
    records = read_jsonl(path)
    by_key = {(r["question_id"], r["turn"]): r for r in records}
    assert by_key[(111, 1)]["judge"] == ["judge-model", "single-math-v1"]
    assert by_key[(111, 2)]["judge"] == ["judge-model", "single-math-v1-multi-turn"]
    assert by_key[(81, 2)]["judge"] == ["judge-model", "single-v1-multi-turn"]
    assert by_key[(111, 2)]["score"] == -1 and by_key[(111, 2)]["status"] == "unparsed"
    assert by_key[(82, 1)]["status"] == "answer_failed" and by_key[(82, 1)]["score"] == -1
    fastchat_fields = {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"}
    assert all(fastchat_fields <= set(r) for r in records) and by_key[(81, 1)]["model"] == "policy"
    assert "A poem." in by_key[(81, 1)]["user_prompt"]
    # Aggregating the file again gives the same numbers; rerunning replaces this model's records.
    assert aggregate_single(records)["mt_bench_score"] == pytest.approx(20 / 3)
    run_mt_bench(
        answers, questions=questions, references=mt_bench[1], prompts=mt_bench[2], judge=judge, out_dir=tmp_path
    )
    assert len(read_jsonl(path)) == 6


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_missing_answers_and_prompts_are_errors(tmp_path, mt_bench):
    questions = [question(mt_bench, 81), question(mt_bench, 111)]
    judge = ScriptedJudge(scripted_rating)
    with pytest.raises(ValueError, match=r"no answer to 1 questions: \[111\]"):
        run_mt_bench(
            [answer_record(81, ["a", "b"])],
            questions=questions,
            references=mt_bench[1],
            prompts=mt_bench[2],
            judge=judge,
            out_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="needs baseline_answers"):
        run_mt_bench(
            [answer_record(81, ["a", "b"])],
            questions=questions[:1],
            references=None,
            prompts=mt_bench[2],
            judge=judge,
            out_dir=tmp_path,
            mode="pairwise",
        )
    prompts = {k: v for k, v in mt_bench[2].items() if k != "single-v1-multi-turn"}
    with pytest.raises(KeyError, match="single-v1-multi-turn"):
        run_mt_bench(
            [answer_record(81, ["a", "b"])],
            questions=questions[:1],
            references=None,
            prompts=prompts,
            judge=judge,
            out_dir=tmp_path,
        )


def prefer_answer(marker):
    """A judge that prefers whichever assistant's answer holds ``marker`` (ties when neither or both do)."""

    def verdict_for(conversation):
        text = conversation[-1]["content"]
        a = text[text.index("Assistant A") : text.index("Assistant B")]
        b = text[text.index("Assistant B") :]
        choice = "A" if marker in a and marker not in b else "B" if marker in b and marker not in a else "C"
        return Verdict(f"[[{choice}]]", choice)

    return verdict_for


def test_mt_bench_pairwise_both_orders(tmp_path, mt_bench):
    questions = [question(mt_bench, 81), question(mt_bench, 111)]
    ours = [answer_record(81, ["good", "good"]), answer_record(111, ["good", "meh"])]
    theirs = [answer_record(q, ["meh", "meh"], model_id="base") for q in (81, 111)]
    judge = ScriptedJudge(prefer_answer("good"))
    result = run_mt_bench(
        ours,
        questions=questions,
        references=mt_bench[1],
        prompts=mt_bench[2],
        judge=judge,
        out_dir=tmp_path,
        mode="pairwise",
        baseline_answers=theirs,
    )
    assert len(judge.asked[0][0]) == 8 and judge.asked[0][1] == PAIR_VERDICTS  # 2 questions x 2 turns x 2 orders
    # 81/1 win, 81/2 win, 111/1 win; 111/2: the multi-turn prompt shows both turns, so "good" in turn 1 wins too.
    assert (result["mt_bench_pair_wins"], result["mt_bench_pair_ties"], result["mt_bench_pair_losses"]) == (4, 0, 0)
    assert result["mt_bench_pair_win_rate"] == 1.0 and result["mt_bench_pair_turn2_win_rate"] == 1.0
    records = read_jsonl(judgment_file(tmp_path, "judge-model", "pairwise"))
    assert all(r["g1_winner"] == r["g2_winner"] == "model_1" for r in records)
    by_key = {(r["question_id"], r["turn"]): r for r in records}
    assert by_key[(111, 2)]["judge"] == ["judge-model", "pair-math-v1-multi-turn"]
    assert by_key[(81, 1)]["model_1"] == "policy" and by_key[(81, 1)]["model_2"] == "base"
    # g1 shows the model as assistant A, g2 as assistant B.
    first = by_key[(81, 1)]["g1_user_prompt"]
    assert first.index("good") < first.index("meh")
    second = by_key[(81, 1)]["g2_user_prompt"]
    assert second.index("meh") < second.index("good")


def test_evol_instruct_win_rate(tmp_path, evol_path, mt_bench):
    questions = read_evol_instruct(evol_path)[:4]
    texts = ["good", "meh", "good", "both"]
    ours = [answer_record(q.question_id, [t]) for q, t in zip(questions, texts)]
    theirs = [
        answer_record(q.question_id, ["meh" if t != "both" else "both"], model_id="sft")
        for q, t in zip(questions, texts)
    ]
    theirs[1]["choices"][0]["turns"] = ["good"]
    theirs[2]["choices"][0]["turns"] = [ERROR_MARKER]

    def verdict_for(conversation):
        if "both" in conversation[-1]["content"]:
            return Verdict("No verdict here.", None)
        return prefer_answer("good")(conversation)

    judge = ScriptedJudge(verdict_for)
    result = run_evol_instruct(ours, theirs, questions=questions, prompts=mt_bench[2], judge=judge, out_dir=tmp_path)
    # Instruction 1: win; 2: loss; 3: the reference's answer failed; 4: unparsed.
    assert (result["evol_wins"], result["evol_ties"], result["evol_losses"]) == (1, 0, 1)
    assert (result["evol_unparsed"], result["evol_answer_errors"], result["evol_questions"]) == (1, 1, 4)
    assert result["evol_win_rate"] == 0.5 and result["evol_win_rate_se"] == pytest.approx(0.5)
    records = read_jsonl(tmp_path / "model_judgment" / "judge-model_pair.jsonl")
    assert {tuple(r["judge"]) for r in records} == {("judge-model", "pair-v2")}
    assert len(judge.asked[0][0]) == 6  # three judged instructions, both orders


# --- The generate judge against a real OpenAI-compatible server ---------------------------------------------------


def fastchat_judgment(messages, max_tokens=None):
    """What the loopback server answers: GPT-4-style judgments, by the prompt's content."""
    prompt = messages[-1]["content"]
    if "[The Start of Assistant A's Answer]" in prompt or (
        "Assistant A's Conversation" in prompt and "Assistant B" in prompt
    ):
        return 'The format is "[[A]]" or "[[B]]" or "[[C]]".\n\nAssistant A answers the question directly.\n\n[[A]]'
    if "ramble" in prompt:
        return "The assistant rambles. I would not rate it."
    if "Reference" in prompt:
        return "The assistant's answer matches the reference answer.\n\nRating: [[9]]"
    return "The response is relevant but lacks depth.\n\nRating: [[5]]"


def test_generate_judge_end_to_end(tmp_path, mt_bench, chat_server, monkeypatch):
    monkeypatch.setattr(chat_server_module, "reply_text", fastchat_judgment)
    monkeypatch.setenv("ADMAP_TEST_JUDGE_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    options = GeneratorOptions(
        generator="openai",
        generator_model="gpt-4o-2024-11-20",
        base_url=chat_server.url,
        api_key_env="ADMAP_TEST_JUDGE_KEY",
        max_new_tokens=2048,
        cache=False,
    )
    judge = build_judge("generate", options, progress=False)
    assert isinstance(judge, GenerateJudge) and judge.model == "gpt-4o-2024-11-20"

    questions = [question(mt_bench, 81), question(mt_bench, 111)]
    answers = [answer_record(81, ["A poem.", "ramble"]), answer_record(111, ["3", "5 pi"])]
    result = run_mt_bench(
        answers, questions=questions, references=mt_bench[1], prompts=mt_bench[2], judge=judge, out_dir=tmp_path
    )
    assert chat_server.count() == 4
    assert (result["mt_bench_judged"], result["mt_bench_unparsed"]) == (3, 1)
    assert result["mt_bench_score"] == pytest.approx((5 + 9 + 9) / 3)
    assert (result["mt_bench_turn1"], result["mt_bench_turn2"]) == (pytest.approx(7.0), 9.0)
    # The judge gets FastChat's system prompt and template, at the settings asked for.
    request = next(r for r in chat_server.requests if "5 pi" in r.prompt)
    assert request.messages[0] == {"role": "system", "content": mt_bench[2]["single-math-v1-multi-turn"].system_prompt}
    assert request.body["model"] == "gpt-4o-2024-11-20" and request.body["max_tokens"] == 2048
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"

    baseline = [answer_record(q, ["other", "other"], model_id="base") for q in (81, 111)]
    pair = run_mt_bench(
        answers,
        questions=questions,
        references=mt_bench[1],
        prompts=mt_bench[2],
        judge=judge,
        out_dir=tmp_path,
        mode="pairwise",
        baseline_answers=baseline,
    )
    # The server always says A: position bias, so every comparison is an inconsistent tie.
    assert (pair["mt_bench_pair_ties"], pair["mt_bench_pair_inconsistent"]) == (4, 4)
    assert (pair["mt_bench_pair_win_rate_model_first"], pair["mt_bench_pair_win_rate_model_second"]) == (1.0, 0.0)

    # Judgment files hold the judgments, never the key.
    for path in (tmp_path / "model_judgment").iterdir():
        text = path.read_text()
        assert FAKE_KEY not in text and "[[" in text


def test_generate_judge_counts_failed_requests(tmp_path, mt_bench, chat_server, monkeypatch):
    monkeypatch.setattr(chat_server_module, "reply_text", fastchat_judgment)
    chat_server.fail("400", match="A poem.", times=None)
    generator = OpenAIGenerator(model="judge", base_url=chat_server.url, max_retries=0, progress=False)
    questions = [question(mt_bench, 81)]
    result = run_mt_bench(
        [answer_record(81, ["A poem.", "Shorter."])],
        questions=questions,
        references=None,
        prompts=mt_bench[2],
        judge=GenerateJudge(generator),
        out_dir=tmp_path,
    )
    # Both judge prompts hold turn 1's answer: both requests fail, and are counted apart from unparsed ones.
    assert (result["mt_bench_judge_errors"], result["mt_bench_unparsed"], result["mt_bench_judged"]) == (2, 0, 0)
    assert math.isnan(result["mt_bench_score"])
    records = read_jsonl(judgment_file(tmp_path, "judge", "single"))
    assert {r["status"] for r in records} == {"judge_failed"} and all(r["judgment"] == ERROR_MARKER for r in records)


# --- AlpacaEval up to the network ------------------------------------------------------------------------------


def test_alpaca_eval_outputs_format(tmp_path):
    source = tmp_path / "alpaca_eval.json"
    source.write_text(
        json.dumps(
            [
                {"instruction": "Name a color.", "output": "ref", "generator": "gpt4", "dataset": "helpful_base"},
                {"instruction": "Say hi.", "output": "ref", "generator": "gpt4", "dataset": "oasst"},
            ]
        )
    )
    questions = load_alpaca_eval_instructions(source)
    assert [(q.question_id, q.category, q.turns) for q in questions] == [
        (0, "helpful_base", ("Name a color.",)),
        (1, "oasst", ("Say hi.",)),
    ]
    records = generate_answers(
        questions, ScriptedGenerator(lambda c: None if "hi" in c[-1]["content"] else "Blue."), model_id="policy"
    )
    outputs = alpaca_eval_outputs(questions, records, generator="policy")
    assert outputs == [
        {"instruction": "Name a color.", "output": "Blue.", "generator": "policy", "dataset": "helpful_base"},
        {"instruction": "Say hi.", "output": "", "generator": "policy", "dataset": "oasst"},  # failed: empty
    ]
    path = write_alpaca_eval_outputs(tmp_path / "out" / "model_outputs.json", outputs)
    assert json.loads(path.read_text()) == outputs

    jsonl = write_lines(tmp_path / "instructions.jsonl", [{"instruction": "One."}, {"instruction": ""}])
    with pytest.raises(InputError, match="row 2, field 'instruction'"):
        load_alpaca_eval_instructions(jsonl)


def test_alpaca_eval_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="set the environment variable OPENAI_API_KEY"):
        run_alpaca_eval(tmp_path / "model_outputs.json", out_dir=tmp_path, name="policy")
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setitem(__import__("sys").modules, "alpaca_eval", None)  # as if not installed
    with pytest.raises(RuntimeError, match="pip install alpaca-eval") as caught:
        run_alpaca_eval(tmp_path / "model_outputs.json", out_dir=tmp_path, name="policy")
    assert FAKE_KEY not in str(caught.value)
    # Offline (conftest), the hub instruction set is a clear error too.
    with pytest.raises(InputError, match="tatsu-lab/alpaca_eval/alpaca_eval.json: could not be loaded"):
        load_alpaca_eval_instructions()


def test_the_pkg_resources_shim_answers_as_alpaca_eval_asks():
    from importlib import metadata

    from admap_experiments.evaluate.alpaca_eval import _pkg_resources_shim

    shim = _pkg_resources_shim()
    assert shim.parse_version("0.10.1") > shim.parse_version("0.9.7")
    assert shim.get_distribution("numpy").version == metadata.version("numpy")
    with pytest.raises(metadata.PackageNotFoundError):
        shim.get_distribution("no-such-distribution-admap")


def test_alpaca_eval_imports_without_setuptools_pkg_resources(monkeypatch):
    import importlib.util
    import sys

    if importlib.util.find_spec("alpaca_eval") is None:
        pytest.skip("alpaca-eval is not installed (admap's eval and dev extras install it)")

    from admap_experiments.evaluate.alpaca_eval import _import_alpaca_eval

    monkeypatch.delitem(sys.modules, "pkg_resources", raising=False)
    if importlib.util.find_spec("pkg_resources") is not None:
        pytest.skip("this setuptools still ships pkg_resources")
    for name in [m for m in sys.modules if m == "alpaca_eval" or m.startswith("alpaca_eval.")]:
        monkeypatch.delitem(sys.modules, name)
    alpaca_eval = _import_alpaca_eval()
    assert callable(alpaca_eval.evaluate)
    assert alpaca_eval.utils.get_package_version("numpy") == __import__("numpy").__version__


def test_write_jsonl_is_atomic_and_readable(tmp_path):
    path = write_jsonl(tmp_path / "deep" / "x.jsonl", [{"a": 1}, {"b": "é"}])
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def alpaca_ranking(messages, max_tokens=None):
    """AlpacaEval's ranking annotator on loopback: the policy's answer (marked GOOD or BAD) wins if GOOD."""
    prompt = "\n".join(m["content"] for m in messages)
    at = {name: prompt.rfind(f'"model": "{name}"') for name in ("model_1", "model_2")}
    marked = "GOOD" if "GOOD" in prompt else "BAD"
    # The policy's answer is the section (after its model's name) that holds the mark.
    policy = max((name for name in at if at[name] < prompt.index(marked)), key=at.get)
    other = "model_2" if policy == "model_1" else "model_1"
    winner, loser = (policy, other) if marked == "GOOD" else (other, policy)
    return f"[{{'model': '{winner}', 'rank': 1}}, {{'model': '{loser}', 'rank': 2}}]"


def test_alpaca_eval_with_the_authors_annotator_against_a_loopback_server(tmp_path, chat_server, monkeypatch):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("alpaca_eval") is None:
        pytest.skip("alpaca-eval is not installed (admap's eval and dev extras install it)")
    monkeypatch.setattr(chat_server_module, "reply_text", alpaca_ranking)
    questions = [f"Question {k}: how is tea made?" for k in range(4)]
    outcomes = ["GOOD", "GOOD", "BAD", "GOOD"]
    model = [
        {"instruction": q, "output": f"{o} answer {k}.", "generator": "policy"}
        for k, (q, o) in enumerate(zip(questions, outcomes))
    ]
    reference = [
        {"instruction": q, "output": f"PLAIN answer {k}.", "generator": "base"} for k, q in enumerate(questions)
    ]
    (tmp_path / "model.json").write_text(json.dumps(model))
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    annotator = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "alpaca_eval" / "alpaca_eval_gpt4o"
    shipped = sorted(path.name for path in annotator.iterdir())
    # AlpacaEval reads the API base when it is imported: a fresh process with the loopback server's address.
    code = (
        "import json; from admap_experiments.evaluate.alpaca_eval import run_alpaca_eval; "
        f"print(json.dumps(run_alpaca_eval({str(tmp_path / 'model.json')!r}, out_dir={str(tmp_path / 'out')!r}, "
        f"name='policy', annotators_config={str(annotator)!r}, reference_outputs={str(tmp_path / 'reference.json')!r}, "
        "length_controlled=False)))"
    )
    env = {**__import__("os").environ, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_API_BASE": chat_server.url}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["alpaca_eval_win_rate"] == outcomes.count("GOOD") / len(outcomes) == 0.75
    assert result["alpaca_eval_n"] == 4 and chat_server.count() == 4
    request = chat_server.requests[0].body
    assert request["model"] == "gpt-4o-2024-11-20" and request["temperature"] == 0 and request["max_tokens"] == 100
    # The annotation cache is in the run's folder; the shipped config folder is as it was.
    assert (tmp_path / "out" / "annotator" / "alpaca_eval_gpt4o" / "annotations_seed0_configs.json").exists()
    assert sorted(path.name for path in annotator.iterdir()) == shipped == ["configs.yaml"]
    assert FAKE_KEY not in done.stdout + done.stderr
