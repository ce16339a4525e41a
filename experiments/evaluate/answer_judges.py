"""Judges: a judge model reads FastChat judge conversations and returns one `Verdict` each.

``verdicts`` names what a judge may answer: ``SINGLE_VERDICTS`` ("1" ... "10") for single-answer grading,
``PAIR_VERDICTS`` ("A", "B", "C" for a tie) for pairwise comparison. Two judges, registered by name in `JUDGES`:

- ``generate``: free-form judgments from any admap generator (GPT-4o, a vLLM server, a local model), parsed as
  FastChat does; an unparsable judgment is a verdict of None (counted by the callers, never a 0);
- ``logprob``: a local model's probability of each allowed verdict right after "[[", for judges too small to
  follow the free-form format.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from tqdm.auto import tqdm

from admap.devices import pick_device
from admap.generate.base import Generator, Messages
from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import build_generator, generate_cached
from admap.models import DEFAULT_GENERATOR_MODEL, load_causal_lm
from admap.registry import Registry
from admap.score.judge import parse_rating

logger = logging.getLogger(__name__)

SINGLE_VERDICTS = tuple(str(rating) for rating in range(1, 11))
PAIR_VERDICTS = ("A", "B", "C")
VERDICT_END = "]]"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Verdict:
    """One judgment.

    ``text``: the judge's raw judgment (None when the request failed, with ``error``); ``verdict``: the parsed
    verdict, one of the allowed ones (a free-form rating may fall between them, such as "6.5"), or None when
    unparsable; ``probabilities``: ``{verdict: probability}`` over the allowed verdicts (sums to 1), when the
    judge has them.
    """

    text: str | None
    verdict: str | None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    @property
    def rating(self) -> float | None:
        """The verdict as a number (single grading), or None."""
        return float(self.verdict) if self.verdict is not None and _is_number(self.verdict) else None

    @property
    def expected_rating(self) -> float | None:
        """The probability-weighted mean rating (G-Eval), when there are probabilities over numeric verdicts."""
        if not self.probabilities or not all(_is_number(v) for v in self.probabilities):
            return None
        return sum(p * float(v) for v, p in self.probabilities.items())


class Judge(Protocol):
    """Judges conversations: ``judge(conversations, verdicts=...)`` returns one `Verdict` per conversation.

    ``model`` names the judge model in FastChat's judgment records (``judge: [model, prompt_name]``).
    """

    name: str

    @property
    def model(self) -> str: ...

    def judge(self, conversations: Sequence[Messages], *, verdicts: Sequence[str]) -> list[Verdict]: ...


JUDGES: Registry[type] = Registry("judge")


def build_judge(kind: str, options: GeneratorOptions, *, device: str = "auto", progress: bool = True) -> Judge:
    """The judge ``kind`` (``generate`` or ``logprob``) on the judge model that ``options`` describes."""
    return JUDGES.get(kind).from_options(options, device=device, progress=progress)


def parse_verdict(text: str | None, verdicts: Sequence[str]) -> str | None:
    """The verdict in a free-form judgment, or None.

    Numeric ``verdicts`` (single grading): `admap.score.judge.parse_rating` (FastChat's ``[[7]]`` first, its last
    occurrence, then common variants), kept when within the verdicts' range; returned as ``"7"`` or ``"6.5"``.
    Otherwise (pairwise): the last ``[[X]]`` with X one of ``verdicts`` (``[[ A ]]`` and ``[[**A**]]`` too), since
    judges sometimes quote the format before giving their own verdict.
    """
    if not isinstance(text, str):
        return None
    if all(_is_number(v) for v in verdicts):
        values = [float(v) for v in verdicts]
        rating = parse_rating(text, low=min(values), high=max(values))
        return None if math.isnan(rating) else f"{rating:g}"
    choices = "|".join(re.escape(v) for v in sorted(verdicts, key=len, reverse=True))
    matches = re.findall(r"\[\[[\s*_]*(" + choices + r")[\s*_]*\]\]", text)
    return matches[-1] if matches else None


@JUDGES.register("generate")
@dataclass
class GenerateJudge:
    """Free-form judgments through any admap generator, parsed by `parse_verdict` (FastChat's way).

    Judgments go through the reply cache (``cache``, ``scope`` as in `admap.generate.runner.generate_cached`),
    so that a rerun resumes. FastChat judges at temperature 0 with up to 2048 new tokens.
    """

    generator: Generator
    cache: ResponseCache | None = None
    scope: str | None = None
    name: str = "generate"

    @property
    def model(self) -> str:
        return self.generator.model

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True) -> GenerateJudge:
        generator = build_generator(options, device=device, progress=progress)
        if generator is None:
            raise ValueError("the generate judge needs a judge model: set its generator (transformers, openai, vllm)")
        return cls(generator, cache=ResponseCache(options.cache_dir) if options.cache else None)

    def judge(self, conversations: Sequence[Messages], *, verdicts: Sequence[str]) -> list[Verdict]:
        completions, stats = generate_cached(self.generator, conversations, cache=self.cache, scope=self.scope)
        results = [Verdict(c.text, parse_verdict(c.text, verdicts), error=c.error) for c in completions]
        unparsed = sum(1 for r in results if r.text is not None and r.verdict is None)
        logger.info(
            "judge %s: %d judgments (%d from the cache), %d failed, %d unparsable",
            self.model,
            len(results),
            stats.cache_hits,
            stats.failed,
            unparsed,
        )
        return results


@JUDGES.register("logprob")
@dataclass
class LogprobJudge:
    """Verdicts from a local model's probabilities, for judges too small to write FastChat's format.

    A 135M-parameter judge does not follow "After providing your explanation, ... strictly following this
    format: [[rating]]": SmolLM2-135M-Instruct's free-form judgments parse for 0 of 12 MT-Bench verdicts, and no
    parser can recover a rating that was never written. What such a model does carry is a preference among
    the verdicts once it is made to give one. So the judge conversation goes through the model's chat
    template, the assistant's reply is started with a prefix ending in "[[" ("Rating: [[" for ratings, as in
    FastChat's example "Rating: [[5]]"), and every allowed verdict followed by "]]" is scored by its total
    log-probability as a continuation: the closing "]]" tells "1" from "10", whose tokens start alike. One
    forward pass encodes the prompt; each candidate then runs on its KV cache (cropped back after it).

    The probabilities over the allowed verdicts are normalised to sum to 1; the verdict is the most probable
    one, and for ratings `Verdict.expected_rating` is the probability-weighted mean (G-Eval). The verdict
    ``text`` is the prefix and the chosen verdict ("Rating: [[7]]"), so that FastChat's own parsers read it.
    """

    model: str = DEFAULT_GENERATOR_MODEL
    device: str = "auto"
    dtype: str = "auto"
    rating_prefix: str = "Rating: [["
    choice_prefix: str = "My final verdict: [["
    progress: bool = True
    name: str = "logprob"
    seconds_per_judgment: float | None = field(default=None, init=False)

    prefix_end: ClassVar[str] = "[["

    def __post_init__(self) -> None:
        for prefix in (self.rating_prefix, self.choice_prefix):
            if not prefix.endswith(self.prefix_end):
                raise ValueError(f"a logprob judge's answer prefix must end with {self.prefix_end!r}, got {prefix!r}")
        self.device = pick_device(self.device)
        self._loaded = None

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True) -> LogprobJudge:
        if options.generator != "transformers":
            raise ValueError(
                f"the logprob judge reads a local transformers model's probabilities; generator "
                f"{options.generator!r} gives none (use the generate judge for API and vLLM judges)"
            )
        return cls(model=options.generator_model, device=device, dtype=options.dtype, progress=progress)

    def _load(self):
        if self._loaded is None:
            self._loaded = load_causal_lm(self.model, self.device, self.dtype)
        return self._loaded

    def judge(self, conversations: Sequence[Messages], *, verdicts: Sequence[str]) -> list[Verdict]:
        verdicts = list(verdicts)
        if not verdicts:
            raise ValueError("verdicts must name at least one allowed verdict")
        prefix = self.rating_prefix if all(_is_number(v) for v in verdicts) else self.choice_prefix
        lm, tokenizer = self._load()
        limit = getattr(lm.config, "max_position_embeddings", None)
        started = time.perf_counter()
        results, masses = [], []
        for conversation in tqdm(conversations, desc=f"judging ({self.model})", disable=not self.progress):
            prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) + prefix
            context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            continuations = [_continuation(tokenizer, prompt, context, v + VERDICT_END) for v in verdicts]
            if limit and len(context) + max(map(len, continuations)) > limit:
                error = f"judge prompt of {len(context)} tokens exceeds {self.model}'s context of {limit}"
                results.append(Verdict(None, None, error=error))
                continue
            logprobs = score_continuations(lm, context, continuations)
            top = max(logprobs)
            # Normalise over the allowed verdicts only (log-sum-exp, shifted by the largest for stability).
            weights = [math.exp(lp - top) for lp in logprobs]
            total = sum(weights)
            masses.append(math.exp(top) * total)
            probabilities = {v: w / total for v, w in zip(verdicts, weights)}
            best = verdicts[logprobs.index(top)]
            results.append(Verdict(f"{prefix}{best}{VERDICT_END}", best, probabilities))
        elapsed = time.perf_counter() - started
        self.seconds_per_judgment = elapsed / len(conversations) if conversations else None
        if masses:
            logger.info(
                "logprob judge %s: %d judgments in %.1f s; the allowed verdicts hold %.2f of the probability (mean)",
                self.model,
                len(conversations),
                elapsed,
                sum(masses) / len(masses),
            )
        return results


def _continuation(tokenizer, prompt: str, context: list[int], continuation: str) -> list[int]:
    """The tokens of ``continuation`` as they follow ``prompt`` (tokenised together, so that a tokenizer that
    marks word starts, like SentencePiece, is handled); an error if the two merge across the boundary."""
    whole = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    if whole[: len(context)] != context or len(whole) == len(context):
        raise ValueError(
            f"the tokenizer merges {continuation!r} into the end of the judge prompt; "
            "use an answer prefix whose last token stays apart"
        )
    return whole[len(context) :]


def score_continuations(lm, context: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
    """Total log-probability of each continuation after ``context`` (token ids), one prompt pass plus a short
    pass per continuation on the prompt's KV cache."""
    import inspect

    import torch

    parameters = inspect.signature(lm.forward).parameters
    # transformers 5 renamed the cache argument and output from past_key_values to cache (the old name goes in 5.40);
    # only the last position's logits are needed (a full [length, vocabulary] matrix is hundreds of MB).
    cache_argument = "cache" if "cache" in parameters else "past_key_values"
    keep = {name: 1 for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters}
    with torch.inference_mode():
        prompt = lm(input_ids=torch.tensor([list(context)], device=lm.device), use_cache=True, **keep)
        first = torch.log_softmax(prompt.logits[0, -1].float(), dim=-1)
        cache = prompt[cache_argument]
        scores = []
        for tokens in continuations:
            score = first[tokens[0]]
            if len(tokens) > 1:
                step = lm(
                    input_ids=torch.tensor([list(tokens[:-1])], device=lm.device),
                    use_cache=True,
                    **{cache_argument: cache},
                )
                logprobs = torch.log_softmax(step.logits[0].float(), dim=-1)
                positions = torch.arange(len(tokens) - 1, device=logprobs.device)
                score = score + logprobs[positions, torch.tensor(tokens[1:], device=logprobs.device)].sum()
                # Back to the prompt alone for the next candidate. A negative crop removes that many tokens in
                # every transformers version (a positive one meant a length before 5.0 and is refused since).
                cache.crop(-(len(tokens) - 1))
            scores.append(float(score))
    return scores
