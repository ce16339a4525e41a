"""Judged benchmarks for trained policies: MT-Bench and Evol-Instruct as FastChat's llm_judge runs them, AlpacaEval.

The runner's calls, in order::

    questions = select_questions(read_questions(mt_bench_dir), limit=...)
    answers = generate_answers(questions, generator, model_id=..., path=answer_file(out_dir, model_id))
    judge = build_judge("logprob" | "generate", judge_options)
    scores = run_mt_bench(answers, questions=questions, references=read_reference_answers(mt_bench_dir),
                          prompts=read_judge_prompts(mt_bench_dir), judge=judge, out_dir=out_dir)
    scores |= run_evol_instruct(answers, reference_answers, questions=..., prompts=..., judge=judge, out_dir=...)
"""

from admap_experiments.evaluate.alpaca_eval import (
    alpaca_eval_outputs,
    load_alpaca_eval_instructions,
    run_alpaca_eval,
    write_alpaca_eval_outputs,
)
from admap_experiments.evaluate.answer_judges import (
    JUDGES,
    PAIR_VERDICTS,
    SINGLE_VERDICTS,
    GenerateJudge,
    Judge,
    LogprobJudge,
    Verdict,
    build_judge,
    parse_verdict,
)
from admap_experiments.evaluate.answers import (
    ERROR_MARKER,
    answer_file,
    generate_answers,
    read_answers,
    write_jsonl,
)
from admap_experiments.evaluate.data import (
    FastChatPrompt,
    Question,
    read_evol_instruct,
    read_judge_prompts,
    read_questions,
    read_reference_answers,
    select_questions,
)
from admap_experiments.evaluate.evol_instruct import run_evol_instruct
from admap_experiments.evaluate.mt_bench import (
    aggregate_pairwise,
    aggregate_single,
    judge_pairwise,
    judge_single,
    judgment_file,
    run_mt_bench,
)
from admap_experiments.evaluate.winrate import WinRate, combine_orders, order_winner, win_rate

__all__ = [
    "ERROR_MARKER",
    "JUDGES",
    "PAIR_VERDICTS",
    "SINGLE_VERDICTS",
    "FastChatPrompt",
    "GenerateJudge",
    "Judge",
    "LogprobJudge",
    "Question",
    "Verdict",
    "WinRate",
    "aggregate_pairwise",
    "aggregate_single",
    "alpaca_eval_outputs",
    "answer_file",
    "build_judge",
    "combine_orders",
    "generate_answers",
    "judge_pairwise",
    "judge_single",
    "judgment_file",
    "load_alpaca_eval_instructions",
    "order_winner",
    "parse_verdict",
    "read_answers",
    "read_evol_instruct",
    "read_judge_prompts",
    "read_questions",
    "read_reference_answers",
    "run_alpaca_eval",
    "run_evol_instruct",
    "run_mt_bench",
    "select_questions",
    "win_rate",
    "write_alpaca_eval_outputs",
    "write_jsonl",
]
