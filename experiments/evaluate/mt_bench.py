"""MT-Bench judging as FastChat's ``llm_judge`` does it: single-answer grading and pairwise comparison.

Single grading (``gen_judgment.py --mode single``): every question's turn 1 is judged with ``single-v1`` and its
turn 2 (two-turn questions) with ``single-v1-multi-turn``, which shows the whole conversation; questions of the
categories math, reasoning and coding use the ``single-math-v1`` variants, which add the GPT-4 reference answer.
Pairwise (``--mode pairwise-baseline``): ``pair-v2`` / ``pair-math-v1`` and their multi-turn variants, each
comparison judged in both orders. The scores are FastChat's: the mean 1-10 rating over the judgments that
parsed (overall, per turn, per category), and the win rate of `admap_experiments.evaluate.winrate`.

Judgment records follow FastChat's ``model_judgment/<judge>_single.jsonl`` and ``<judge>_pair.jsonl`` (score -1
when no rating parsed; winner ``error`` when no verdict did), plus admap's ``category``, ``status`` (``ok``,
``unparsed``, ``judge_failed``, ``answer_failed``), the parsed ``verdict``, and, from a logprob judge,
``probabilities`` and ``expected_score``. A turn whose answer failed (``$ERROR$``) is not judged; every
judgment that does not count is counted in the aggregate.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from admap.load.readers import iter_jsonl
from admap_experiments.evaluate.answer_judges import PAIR_VERDICTS, SINGLE_VERDICTS, Judge, Verdict
from admap_experiments.evaluate.answers import ERROR_MARKER, answer_turns, index_answers, safe_name, write_jsonl
from admap_experiments.evaluate.data import FastChatPrompt, Messages, Question, QuestionId
from admap_experiments.evaluate.winrate import BASELINE, MODEL, TIE, mean_se, order_winner, win_rate

logger = logging.getLogger(__name__)

# FastChat's NEED_REF_CATS (it also lists arena-hard-200, which MT-Bench does not have).
NEED_REFERENCE = ("math", "reasoning", "coding")
JUDGMENT_DIR = "model_judgment"
MODES = ("single", "pairwise")
OK, UNPARSED, JUDGE_FAILED, ANSWER_FAILED = "ok", "unparsed", "judge_failed", "answer_failed"
# FastChat's pairwise record names the two sides model_1 (here: the model judged) and model_2 (the baseline).
FASTCHAT_WINNER = {MODEL: "model_1", BASELINE: "model_2", TIE: "tie", None: "error"}
WINNER_OF = {name: winner for winner, name in FASTCHAT_WINNER.items()}

PromptChooser = Callable[[str, int], str]


def needs_reference(category: str) -> bool:
    return category in NEED_REFERENCE


def single_prompt_name(category: str, turn: int) -> str:
    """``single-v1`` / ``single-math-v1`` for turn 1, with ``-multi-turn`` for turn 2."""
    name = "single-math-v1" if needs_reference(category) else "single-v1"
    return f"{name}-multi-turn" if turn == 2 else name


def pair_prompt_name(category: str, turn: int) -> str:
    """``pair-v2`` / ``pair-math-v1`` for turn 1, with ``-multi-turn`` for turn 2."""
    name = "pair-math-v1" if needs_reference(category) else "pair-v2"
    return f"{name}-multi-turn" if turn == 2 else name


def judged_turns(question: Question) -> tuple[int, ...]:
    """FastChat judges turn 1 of every question, and turn 2 of the two-turn ones."""
    return (1, 2) if len(question.turns) == 2 else (1,)


def _prompt(prompts: Mapping[str, FastChatPrompt], name: str) -> FastChatPrompt:
    if name not in prompts:
        raise KeyError(f"judge prompt {name!r} is not among the judge prompts given ({', '.join(sorted(prompts))})")
    return prompts[name]


def _reference_fields(prompt: FastChatPrompt, question: Question, turn: int, references) -> dict[str, str]:
    if "{ref_answer_1}" not in prompt.template:
        return {}
    reference = (references or {}).get(question.question_id)
    if reference is None or len(reference) < turn:
        raise ValueError(
            f"question {question.question_id!r} ({question.category}) is judged with {prompt.name}, which needs "
            f"a reference answer for turn {turn}; the reference answers have none"
        )
    return {f"ref_answer_{k}": reference[k - 1] for k in range(1, turn + 1)}


def single_conversation(
    question: Question,
    answer: Sequence[str],
    *,
    turn: int,
    prompt: FastChatPrompt,
    references: Mapping[QuestionId, Sequence[str]] | None = None,
) -> Messages:
    """The judge conversation grading ``answer`` (the model's turns) at ``turn`` (1 or 2), as FastChat's
    ``run_judge_single`` fills its templates."""
    if turn == 1:
        fields = {"question": question.turns[0], "answer": answer[0]}
    else:
        fields = {
            "question_1": question.turns[0],
            "question_2": question.turns[1],
            "answer_1": answer[0],
            "answer_2": answer[1],
        }
    return prompt.messages(**fields, **_reference_fields(prompt, question, turn, references))


def pair_conversation(
    question: Question,
    answer_a: Sequence[str],
    answer_b: Sequence[str],
    *,
    turn: int,
    prompt: FastChatPrompt,
    references: Mapping[QuestionId, Sequence[str]] | None = None,
) -> Messages:
    """The judge conversation comparing assistant A's and B's answers at ``turn``, as FastChat's ``run_judge_pair``."""
    if turn == 1:
        fields = {"question": question.turns[0], "answer_a": answer_a[0], "answer_b": answer_b[0]}
    else:
        fields = {
            "question_1": question.turns[0],
            "question_2": question.turns[1],
            "answer_a_1": answer_a[0],
            "answer_b_1": answer_b[0],
            "answer_a_2": answer_a[1],
            "answer_b_2": answer_b[1],
        }
    return prompt.messages(**fields, **_reference_fields(prompt, question, turn, references))


def _answers_of(questions: Sequence[Question], answers, what: str) -> dict[QuestionId, list[str]]:
    indexed = index_answers(list(answers), what=what)
    missing = [q.question_id for q in questions if q.question_id not in indexed]
    if missing:
        raise ValueError(f"{what} have no answer to {len(missing)} questions: {missing[:10]}; generate them first")
    turns = {q.question_id: answer_turns(indexed[q.question_id]) for q in questions}
    short = [q.question_id for q in questions if len(turns[q.question_id]) < len(q.turns)]
    if short:
        raise ValueError(f"{what} answer fewer turns than asked for questions {short[:10]}")
    return turns


def _model_id(answers, what: str) -> str:
    records = list(answers)
    if not records:
        raise ValueError(f"no {what}")
    return records[0]["model_id"]


def _score(value: float | None) -> float | int:
    if value is None:
        return -1  # FastChat's "no rating"
    return int(value) if float(value).is_integer() else value


def judge_single(
    questions: Sequence[Question],
    answers: Sequence[dict],
    *,
    prompts: Mapping[str, FastChatPrompt],
    judge: Judge,
    references: Mapping[QuestionId, Sequence[str]] | None = None,
) -> list[dict]:
    """FastChat single-grading judgment records for every question and judged turn (one judge call for all)."""
    model = _model_id(answers, "answers")
    turns_of = _answers_of(questions, answers, "answers")
    items, conversations = [], []
    for question in questions:
        answer = turns_of[question.question_id]
        for turn in judged_turns(question):
            prompt = _prompt(prompts, single_prompt_name(question.category, turn))
            messages = single_conversation(question, answer, turn=turn, prompt=prompt, references=references)
            failed = ERROR_MARKER in answer[:turn]
            items.append((question, turn, prompt.name, messages, failed))
            if not failed:
                conversations.append(messages)
    verdicts = iter(judge.judge(conversations, verdicts=SINGLE_VERDICTS) if conversations else [])
    records = []
    for question, turn, prompt_name, messages, failed in items:
        verdict = Verdict(None, None, error="the answer failed") if failed else next(verdicts)
        status = ANSWER_FAILED if failed else _status(verdict)
        records.append(
            {
                "question_id": question.question_id,
                "model": model,
                "judge": [judge.model, prompt_name],
                "user_prompt": messages[-1]["content"],
                "judgment": verdict.text if verdict.text is not None else ERROR_MARKER,
                "score": _score(verdict.rating),
                "turn": turn,
                "tstamp": time.time(),
                "category": question.category,
                "status": status,
                "verdict": verdict.verdict,
                "probabilities": verdict.probabilities,
                "expected_score": verdict.expected_rating,
                "error": verdict.error,
            }
        )
    return records


def _status(verdict: Verdict) -> str:
    if verdict.text is None:
        return JUDGE_FAILED
    return OK if verdict.verdict is not None else UNPARSED


def judge_pairwise(
    questions: Sequence[Question],
    answers: Sequence[dict],
    baseline_answers: Sequence[dict],
    *,
    prompts: Mapping[str, FastChatPrompt],
    judge: Judge,
    references: Mapping[QuestionId, Sequence[str]] | None = None,
    prompt_name: PromptChooser = pair_prompt_name,
) -> list[dict]:
    """FastChat pairwise judgment records (``play_a_match_pair``): per question and judged turn, the model
    as assistant A (``g1``) and as assistant B (``g2``); ``prompt_name(category, turn)`` picks the prompt."""
    model = _model_id(answers, "answers")
    baseline = _model_id(baseline_answers, "baseline answers")
    if model == baseline:
        raise ValueError(f"the model and the baseline are both {model!r}; give their answers different model_ids")
    ours = _answers_of(questions, answers, "answers")
    theirs = _answers_of(questions, baseline_answers, "baseline answers")
    items, conversations = [], []
    for question in questions:
        a, b = ours[question.question_id], theirs[question.question_id]
        for turn in judged_turns(question):
            prompt = _prompt(prompts, prompt_name(question.category, turn))
            pair = [
                pair_conversation(question, a, b, turn=turn, prompt=prompt, references=references),
                pair_conversation(question, b, a, turn=turn, prompt=prompt, references=references),
            ]
            failed = ERROR_MARKER in a[:turn] or ERROR_MARKER in b[:turn]
            items.append((question, turn, prompt.name, pair, failed))
            if not failed:
                conversations += pair
    verdicts = iter(judge.judge(conversations, verdicts=PAIR_VERDICTS) if conversations else [])
    records = []
    for question, turn, prompt_name_used, pair, failed in items:
        if failed:
            skipped = Verdict(None, None, error="an answer failed")
            first = second = skipped
            status = ANSWER_FAILED
        else:
            first, second = next(verdicts), next(verdicts)
            statuses = {_status(first), _status(second)}
            status = JUDGE_FAILED if JUDGE_FAILED in statuses else UNPARSED if UNPARSED in statuses else OK
        records.append(
            {
                "question_id": question.question_id,
                "model_1": model,
                "model_2": baseline,
                "g1_winner": FASTCHAT_WINNER[order_winner(first.verdict, model_is_a=True)],
                "g2_winner": FASTCHAT_WINNER[order_winner(second.verdict, model_is_a=False)],
                "judge": [judge.model, prompt_name_used],
                "g1_user_prompt": pair[0][-1]["content"],
                "g1_judgment": first.text if first.text is not None else ERROR_MARKER,
                "g2_user_prompt": pair[1][-1]["content"],
                "g2_judgment": second.text if second.text is not None else ERROR_MARKER,
                "turn": turn,
                "tstamp": time.time(),
                "category": question.category,
                "status": status,
                "g1_probabilities": first.probabilities,
                "g2_probabilities": second.probabilities,
                "error": first.error or second.error,
            }
        )
    return records


# --- Aggregates ------------------------------------------------------------------------------------------------


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def _single_status(record: dict) -> str:
    # Records written by FastChat itself have no status: a score of -1 is its only mark of a failure.
    return record.get("status") or (OK if record["score"] != -1 else UNPARSED)


def aggregate_single(records: Sequence[dict], *, prefix: str = "mt_bench") -> dict[str, float | int]:
    """``{prefix}_score`` (mean rating of the parsed judgments, all turns), ``_score_se``, ``_turn1``, ``_turn2``
    (with ``_se``), ``_<category>`` per category, counts ``_judged``, ``_unparsed``, ``_judge_errors``,
    ``_answer_errors``, and for a judge with probabilities ``_expected_score`` (``_se``)."""
    statuses = [_single_status(r) for r in records]
    scored = [r for r, s in zip(records, statuses) if s == OK]
    result: dict[str, float | int] = {}
    result[f"{prefix}_score"], result[f"{prefix}_score_se"] = mean_se([float(r["score"]) for r in scored])
    for turn in sorted({r["turn"] for r in records}):
        ratings = [float(r["score"]) for r in scored if r["turn"] == turn]
        result[f"{prefix}_turn{turn}"], result[f"{prefix}_turn{turn}_se"] = mean_se(ratings)
    expected = [r["expected_score"] for r in scored if r.get("expected_score") is not None]
    if expected:
        result[f"{prefix}_expected_score"], result[f"{prefix}_expected_score_se"] = mean_se(expected)
    for category in sorted({r["category"] for r in records if r.get("category")}):
        result[f"{prefix}_{_key(category)}"] = mean_se(
            [float(r["score"]) for r in scored if r["category"] == category]
        )[0]
    result[f"{prefix}_judged"] = len(scored)
    result[f"{prefix}_unparsed"] = statuses.count(UNPARSED)
    result[f"{prefix}_judge_errors"] = statuses.count(JUDGE_FAILED)
    result[f"{prefix}_answer_errors"] = statuses.count(ANSWER_FAILED)
    if result[f"{prefix}_unparsed"]:
        logger.warning(
            "%s: %d of %d judgments had no readable rating (excluded, FastChat's score -1)",
            prefix,
            result[f"{prefix}_unparsed"],
            len(records),
        )
    return result


def _pair_status(record: dict) -> str:
    if record.get("status"):
        return record["status"]
    return OK if "error" not in (record["g1_winner"], record["g2_winner"]) else UNPARSED


def aggregate_pairwise(records: Sequence[dict], *, prefix: str) -> dict[str, float | int]:
    """`admap_experiments.evaluate.winrate.WinRate` fields as ``{prefix}_win_rate``, ``_wins``, ... over all turns and
    per turn (``{prefix}_turn1_win_rate``), plus ``_judge_errors`` and ``_answer_errors``."""
    statuses = [_pair_status(r) for r in records]
    judged = [r for r, s in zip(records, statuses) if s in (OK, UNPARSED)]

    def pairs(rows):
        return [(WINNER_OF[r["g1_winner"]], WINNER_OF[r["g2_winner"]]) for r in rows]

    result: dict[str, float | int] = dict(win_rate(pairs(judged)).to_dict(prefix))
    turns = sorted({r["turn"] for r in records})
    if len(turns) > 1:
        for turn in turns:
            rate = win_rate(pairs([r for r in judged if r["turn"] == turn]))
            result[f"{prefix}_turn{turn}_win_rate"] = rate.win_rate
            result[f"{prefix}_turn{turn}_win_rate_se"] = rate.win_rate_se
    result[f"{prefix}_judge_errors"] = statuses.count(JUDGE_FAILED)
    result[f"{prefix}_answer_errors"] = statuses.count(ANSWER_FAILED)
    return result


# --- Files -----------------------------------------------------------------------------------------------------


def judgment_file(out_dir: str | Path, judge_model: str, mode: str) -> Path:
    """FastChat's layout: ``<out_dir>/model_judgment/<judge>_single.jsonl`` or ``<judge>_pair.jsonl``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    suffix = "single" if mode == "single" else "pair"
    return Path(out_dir) / JUDGMENT_DIR / f"{safe_name(judge_model)}_{suffix}.jsonl"


def _run_key(record: dict) -> tuple:
    return (record.get("model"), record.get("model_1"), record.get("model_2"), tuple(record.get("judge") or ())[:1])


def write_judgments(path: str | Path, records: Sequence[dict]) -> Path:
    """Write ``records`` to ``path``, replacing the records of the same model(s) and judge already there (a rerun)
    and keeping other models' (FastChat keeps every model's judgments in one file per judge)."""
    path = Path(path)
    replaced = {_run_key(r) for r in records}
    kept = [r for _, r in iter_jsonl(path) if _run_key(r) not in replaced] if path.exists() else []
    return write_jsonl(path, [*kept, *records])


def run_mt_bench(
    answers: Sequence[dict],
    *,
    questions: Sequence[Question],
    references: Mapping[QuestionId, Sequence[str]] | None,
    prompts: Mapping[str, FastChatPrompt],
    judge: Judge,
    out_dir: str | Path,
    mode: str = "single",
    baseline_answers: Sequence[dict] | None = None,
) -> dict[str, float | int]:
    """Judge one model's MT-Bench answers and return the aggregate.

    ``mode`` ``single``: FastChat single-answer grading, written to ``<out_dir>/model_judgment/<judge>_single.jsonl``;
    keys ``mt_bench_score``, ``mt_bench_score_se``, ``mt_bench_turn1``, ``mt_bench_turn2``, ``mt_bench_unparsed``,
    ... (`aggregate_single`). ``pairwise``: against ``baseline_answers``, both orders, written to
    ``<judge>_pair.jsonl``; keys ``mt_bench_pair_win_rate``, ``mt_bench_pair_wins``, ... (`aggregate_pairwise`).
    ``out_dir`` plays FastChat's ``data/mt_bench``. ``references``: ``{question_id: turns}`` for math, reasoning
    and coding questions (`admap_experiments.evaluate.data.read_reference_answers`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "single":
        records = judge_single(questions, answers, prompts=prompts, judge=judge, references=references)
        result = aggregate_single(records, prefix="mt_bench")
    else:
        if baseline_answers is None:
            raise ValueError("pairwise MT-Bench needs baseline_answers (the opponent's FastChat answer records)")
        records = judge_pairwise(
            questions, answers, baseline_answers, prompts=prompts, judge=judge, references=references
        )
        result = aggregate_pairwise(records, prefix="mt_bench_pair")
    path = write_judgments(judgment_file(out_dir, judge.model, mode), records)
    logger.info("MT-Bench (%s): %d judgments written to %s", mode, len(records), path)
    return {"mt_bench_questions": len(questions), **result}
