"""Answering benchmark questions in a child process, one per answering job.

A run trains the policy and answers with it in one process, and answers twice in a row (the untrained
policy's reference answers, then the trained policy's). GPU memory is given back reliably only when the
process holding it exits: a model can stay reachable through reference cycles after ``del``, and vLLM
refuses to start unless ``gpu_memory_utilization`` of the GPU's memory is free. So each job (one
generator and model answering some benchmarks) runs in a fresh "spawn" child that writes the FastChat
answer files and exits; the parent reads the files. API generators take the same path: one code path,
and a child's start (seconds) is small against the requests' minutes.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import sys
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import build_generator
from admap_experiments.evaluate.answers import answer_file, answers_to, generate_answers, unanswered
from admap_experiments.evaluate.data import Question

logger = logging.getLogger(__name__)

CHILD_LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


class AnswerProcessError(RuntimeError):
    """An answering job failed in its child process; the message holds the child's exit code and traceback."""


@dataclass(frozen=True)
class AnswerJob:
    """One model answering some benchmarks: ``questions`` by benchmark, answers in
    ``out_dir/<benchmark>/model_answer/<model_id>.jsonl``."""

    generation: GeneratorOptions
    model_id: str
    questions: dict[str, list[Question]]
    out_dir: Path
    system_prompt: str | None = None
    progress: bool = True

    def answer_path(self, benchmark: str) -> Path:
        return answer_file(self.out_dir / benchmark, self.model_id)


def answer_in_child(job: AnswerJob) -> dict[str, list[dict]]:
    """Each benchmark's answer records, in question order, generated in a child process; answer files that
    are already complete are read, and no child is started when every one is."""
    pending = {
        name: questions
        for name, questions in job.questions.items()
        if unanswered(questions, job.answer_path(name), model_id=job.model_id)
    }
    if pending:
        _run_child(replace(job, questions=pending))
    else:
        logger.info("%s: every answer already in %s", job.model_id, job.out_dir)
    return {name: answers_to(questions, job.answer_path(name)) for name, questions in job.questions.items()}


def _run_child(job: AnswerJob) -> None:
    _release_cached_gpu_memory()
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    # Not a daemon: vLLM starts engine processes of its own, which a daemonic process may not have.
    child = context.Process(
        target=_answer_job, args=(job, sender, _log_levels()), name=f"answer-{job.model_id}", daemon=False
    )
    child.start()
    # The child now holds the only sending end, so receiving ends when it exits.
    sender.close()
    try:
        try:
            failure = receiver.recv()
        except EOFError:  # it exited without a word: it succeeded, or was killed
            failure = None
        child.join()
    finally:
        receiver.close()
        if child.is_alive():  # this process was interrupted: leave no child holding the GPU
            child.terminate()
            child.join()
    if child.exitcode != 0:
        ended = f"exit code {child.exitcode}" if child.exitcode > 0 else f"killed by signal {-child.exitcode}"
        why = failure or "it sent no traceback; its output above may say why"
        raise AnswerProcessError(
            f"answering as {job.model_id!r} with {job.generation.generator} ({job.generation.generator_model}) "
            f"failed in child process {child.pid}, {ended}:\n{why}"
        )


def _answer_job(job: AnswerJob, failures: Connection, log_levels: dict[str, int]) -> None:
    """The child's work: generate the answers into the answer files, or send the traceback and exit with 1."""
    logging.basicConfig(format=CHILD_LOG_FORMAT, datefmt="%H:%M:%S")
    for name, level in log_levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        generator = build_generator(job.generation, progress=job.progress)
        # A fixed model (an API baseline) is asked once for all experiments; a trained checkpoint is not cached.
        cache = ResponseCache(job.generation.cache_dir) if job.generation.cache else None
        for name, questions in job.questions.items():
            generate_answers(
                questions,
                generator,
                model_id=job.model_id,
                path=job.answer_path(name),
                system_prompt=job.system_prompt,
                cache=cache,
            )
    except BaseException:
        failures.send(traceback.format_exc())
        sys.exit(1)
    finally:
        failures.close()


def _log_levels() -> dict[str, int]:
    """The levels set in this process (the root logger's under ``""``), for the child to set alike."""
    loggers = logging.root.manager.loggerDict.items()
    levels = {name: log.level for name, log in loggers if isinstance(log, logging.Logger) and log.level}
    return levels | {"": logging.root.level}


def _release_cached_gpu_memory() -> None:
    """Hand the GPU memory this process no longer uses back to the driver, for the child to find free.

    Tensors reachable only through reference cycles (a trainer and its callbacks) are freed by a collection,
    and PyTorch's allocator keeps freed blocks until emptied. Memory this process still references stays
    taken; only the end of a process gives back everything it held.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()
