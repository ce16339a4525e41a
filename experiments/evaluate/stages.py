"""The answer and judge stages of an experiment run: the trained policy answers the configured
benchmarks, the untrained policy (or given answer files) is the pairwise opponent, the judge grades.

The benchmark logic itself (FastChat's prompts, verdicts, win rates) lives in the sibling modules.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from admap.config import to_dict
from admap.devices import pick_device
from admap.generate.options import GeneratorOptions
from admap_experiments.config import EvaluationOptions, ExperimentConfig, fingerprint
from admap_experiments.evaluate.alpaca_eval import (
    alpaca_eval_outputs,
    load_alpaca_eval_instructions,
    run_alpaca_eval,
    write_alpaca_eval_outputs,
)
from admap_experiments.evaluate.answer_judges import build_judge
from admap_experiments.evaluate.answer_process import AnswerJob, answer_in_child
from admap_experiments.evaluate.answers import answer_file, read_answers
from admap_experiments.evaluate.data import (
    Question,
    read_evol_instruct,
    read_judge_prompts,
    read_questions,
    read_reference_answers,
    select_questions,
)
from admap_experiments.evaluate.evol_instruct import run_evol_instruct
from admap_experiments.evaluate.mt_bench import run_mt_bench

logger = logging.getLogger(__name__)

MT_BENCH, EVOL_INSTRUCT, ALPACA_EVAL = "mt_bench", "evol_instruct", "alpaca_eval"


def benchmark_questions(options: EvaluationOptions) -> dict[str, list]:
    """The configured benchmarks' questions (first N where a limit is set)."""
    questions = {}
    if options.mt_bench:
        questions[MT_BENCH] = select_questions(read_questions(options.mt_bench), limit=options.mt_bench_questions)
    if options.evol_instruct:
        evol = read_evol_instruct(options.evol_instruct)
        questions[EVOL_INSTRUCT] = select_questions(evol, limit=options.evol_instruct_questions)
    if options.alpaca_eval:
        alpaca = load_alpaca_eval_instructions(options.alpaca_eval)
        questions[ALPACA_EVAL] = select_questions(alpaca, limit=options.alpaca_eval_questions)
    return questions


def _needs_opponent(options: EvaluationOptions) -> set[str]:
    needed = {EVOL_INSTRUCT} if options.evol_instruct else set()
    if options.mt_bench and options.mt_bench_mode in ("pairwise", "both"):
        needed.add(MT_BENCH)
    return needed


def answer_benchmarks(
    generation: GeneratorOptions,
    model_id: str,
    questions: dict[str, list[Question]],
    out_dir: Path,
    *,
    progress: bool,
) -> dict[str, list[dict]]:
    """The model of ``generation`` answers ``questions`` (by benchmark), in a child process (`answer_in_child`);
    FastChat answer files under ``out_dir/<benchmark>/model_answer/``, reused where complete."""
    job = AnswerJob(
        generation=generation,
        model_id=model_id,
        questions=dict(sorted(questions.items())),
        out_dir=out_dir,
        system_prompt=generation.system_prompt or None,
        progress=progress,
    )
    return answer_in_child(job)


def reference_answers(
    config: ExperimentConfig, base_checkpoint: str, folder: Path, *, progress: bool
) -> dict[str, list[dict]]:
    """The pairwise opponent's answers: the untrained policy's (generated once per experiment and answer
    settings), a baseline model's (``baseline``: generated once per baseline and questions, each request
    cached) or FastChat answer files (``<benchmark>.jsonl``) in a given folder."""
    options = config.evaluation
    needed = _needs_opponent(options)
    if not needed:
        return {}
    if options.reference_answers not in ("base", "baseline"):
        return {name: read_answers(Path(options.reference_answers) / f"{name}.jsonl") for name in needed}
    questions = {name: asked for name, asked in benchmark_questions(options).items() if name in needed}
    if options.reference_answers == "baseline":
        baseline = options.baseline
        asked_ids = {name: [q.question_id for q in asked] for name, asked in questions.items()}
        out_dir = folder / fingerprint({"baseline": to_dict(baseline), "questions": asked_ids})
        return answer_benchmarks(baseline, baseline.generator_model, questions, out_dir, progress=progress)
    settings = {"model": config.train.model, "answer": to_dict(options.answer), "evaluation": to_dict(options)}
    out_dir = folder / fingerprint(settings)
    generation = replace(options.answer, generator_model=base_checkpoint)
    return answer_benchmarks(generation, "base", questions, out_dir, progress=progress)


def evaluate_policy(
    config: ExperimentConfig,
    model_dir: Path,
    eval_dir: Path,
    *,
    reference: dict[str, list[dict]],
    stages: list[str],
    progress: bool,
) -> dict:
    """Answer (stage ``answer``) and judge (stage ``judge``) every configured benchmark; returns the
    aggregates (``mt_bench_*``, ``evol_*``) and the judge's name."""
    options = config.evaluation
    questions = benchmark_questions(options)
    if not questions:
        return {}
    model_id = "policy"
    if "answer" in stages:
        generation = replace(options.answer, generator_model=str(model_dir))
        answers = answer_benchmarks(generation, model_id, questions, eval_dir, progress=progress)
    else:
        answers = {name: read_answers(answer_file(eval_dir / name, model_id)) for name in questions}
    if "judge" not in stages:
        return {}
    row: dict = {}
    if ALPACA_EVAL in questions:
        # AlpacaEval brings its own annotator (through the alpaca_eval package), not the FastChat judge.
        outputs = alpaca_eval_outputs(questions[ALPACA_EVAL], answers[ALPACA_EVAL], generator=model_dir.parent.name)
        outputs_path = write_alpaca_eval_outputs(eval_dir / ALPACA_EVAL / "model_outputs.json", outputs)
        row |= run_alpaca_eval(
            outputs_path,
            out_dir=eval_dir / ALPACA_EVAL,
            name=model_dir.parent.name,
            annotators_config=options.alpaca_eval_annotator,
            length_controlled=options.alpaca_eval_length_controlled,
        )
    if not ({MT_BENCH, EVOL_INSTRUCT} & set(questions)):
        return row
    prompts = read_judge_prompts(options.judge_prompts or options.mt_bench)
    judge = build_judge(options.judge, options.judge_generation, device=pick_device("auto"), progress=progress)
    row["judge"] = f"{options.judge}:{judge.model}"
    if MT_BENCH in questions:
        modes = ("single", "pairwise") if options.mt_bench_mode == "both" else (options.mt_bench_mode,)
        for mode in modes:
            row |= run_mt_bench(
                answers[MT_BENCH],
                questions=questions[MT_BENCH],
                references=read_reference_answers(options.mt_bench),
                prompts=prompts,
                judge=judge,
                out_dir=eval_dir / MT_BENCH,
                mode=mode,
                baseline_answers=reference.get(MT_BENCH),
            )
    if EVOL_INSTRUCT in questions:
        row |= run_evol_instruct(
            answers[EVOL_INSTRUCT],
            reference[EVOL_INSTRUCT],
            questions=questions[EVOL_INSTRUCT],
            prompts=prompts,
            judge=judge,
            out_dir=eval_dir / EVOL_INSTRUCT,
        )
    logger.info("evaluation: %s", {k: v for k, v in row.items() if not isinstance(v, str)})
    return row
