"""Evol-Instruct: the win rate of a model's answers against a reference model's on WizardLM's 218-instruction
test set, judged pairwise in both orders with FastChat's ``pair-v2`` prompt (no reference answers)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from admap_experiments.evaluate.answer_judges import Judge
from admap_experiments.evaluate.data import FastChatPrompt, Question
from admap_experiments.evaluate.mt_bench import aggregate_pairwise, judge_pairwise, judgment_file, write_judgments

logger = logging.getLogger(__name__)

EVOL_PROMPT = "pair-v2"


def evol_prompt_name(category: str, turn: int) -> str:
    """Every Evol-Instruct instruction, whatever its skill, is compared with ``pair-v2``."""
    return EVOL_PROMPT


def run_evol_instruct(
    answers: Sequence[dict],
    reference_answers: Sequence[dict],
    *,
    questions: Sequence[Question],
    prompts: Mapping[str, FastChatPrompt],
    judge: Judge,
    out_dir: str | Path,
) -> dict[str, float | int]:
    """Judge ``answers`` against ``reference_answers`` (FastChat answer records of two models) and return
    ``evol_win_rate`` (ties count half), ``evol_win_rate_se``, ``evol_wins``, ``evol_ties``, ``evol_losses``,
    ``evol_unparsed``, ``evol_inconsistent``, the per-order ``evol_win_rate_model_first`` / ``_model_second``,
    ``evol_judge_errors``, ``evol_answer_errors`` and ``evol_questions``.

    The records go to ``<out_dir>/model_judgment/<judge>_pair.jsonl`` (FastChat's pairwise layout; ``out_dir``
    is the benchmark's own folder, apart from MT-Bench's).
    """
    records = judge_pairwise(
        questions, answers, reference_answers, prompts=prompts, judge=judge, prompt_name=evol_prompt_name
    )
    path = write_judgments(judgment_file(out_dir, judge.model, "pairwise"), records)
    result = aggregate_pairwise(records, prefix="evol")
    logger.info(
        "Evol-Instruct: win rate %.3f (%d wins, %d ties, %d losses, %d unparsed); judgments in %s",
        result["evol_win_rate"],
        result["evol_wins"],
        result["evol_ties"],
        result["evol_losses"],
        result["evol_unparsed"],
        path,
    )
    return {"evol_questions": len(questions), **result}
