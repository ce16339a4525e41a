"""LLM-as-a-judge alignment score: a judge model rates each response from 1 to 10 (MT-Bench single-v1).

The judge is any registered generator (the offline SmolLM2 by default, GPT-4o or any
OpenAI-compatible endpoint), run through the reply cache. Each verdict is parsed by
`parse_rating`; a verdict that cannot be read is a missing score, never a 0. With several samples
per response the score is the median of the verdicts that parsed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.config import option
from admap.generate.base import Completion, Generator
from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import GenerationStats, build_generator, generate_cached
from admap.score.base import SCORERS, ScorerDefaults, ScoringContext
from admap.score.judge_prompt import DEFAULT_JUDGE_PROMPT, JudgePrompt, load_judge_prompt

logger = logging.getLogger(__name__)

VERDICT_COLUMNS = ["instruction_id", "response_id", "sample", "verdict", "rating", "error"]

# --- Verdict parsing -------------------------------------------------------------------------------------------
# Tiers, strongest first; the first tier with a match decides, by its LAST match (judges sometimes
# quote the format before their own verdict). If that match is outside [low, high] the verdict is
# refused rather than replaced by an earlier number.

_NUMBER = r"(?P<n>[-+]?\d+(?:\.\d+)?)"
# "7 or 8", "1-10", "1 to 10": a range or a hedge, not a verdict.
_NOT_RANGE = r"(?!\s*(?:-|–|to\b|or\b)\s*[-+]?\d)"
_DENOMINATOR = r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?))?"
_MARKUP = r"[\s*_]*"

# Tier 1, the FastChat format: [[7]], [[7.5]], [[ **8** ]], [[8/10]], also with one closing bracket.
_BRACKETED = re.compile(r"\[\[" + _MARKUP + _NUMBER + _MARKUP + _DENOMINATOR + _MARKUP + r"\]")

# Tier 2, a number right after a rating cue: "Rating: 7", "**Rating:** 7/10", "Score: 8 out of 10",
# "rating of 6", "Rating: [7]", "I would rate this response a 7", "I'd give it a 6/10".
_CUE = (
    r"(?:\b(?:final\s+|overall\s+)?(?:ratings?|scores?|verdict)\b"
    r"|\b(?:i|i'd|i\s+would|i\s+will|i\s+can|would|will)\s+(?:\w+\s+)?(?:rate|give|score|assign)\b"
    r"|\brated\b)"
)
_GAP = r"(?:[\s:=*_#>\"'`|]|-(?=\s))*"
_FILLER = (
    r"(?:(?:is|of|be|a|an|it|this|that|the|my|as|at|response|answer|assistant'?s?|final|overall|would|will|"
    r"i|give|rating|score|solid|strong|weak|fair|low|high|generous)\b" + _GAP + r")"
)
_CUED = re.compile(
    _CUE
    + _GAP
    + _FILLER
    + r"{0,5}(?P<open>[\[(]{1,2})?"
    + _MARKUP
    + _NUMBER
    + r"(?![\w%])"
    + _NOT_RANGE
    + _DENOMINATOR
    + r"(?(open)"
    + _MARKUP
    + r"[\])])",
    re.IGNORECASE,
)

# Tier 3, a bare score on ten: "7/10", "8 out of 10" (not a date such as 1/10/2024, not 3/100).
_ON_TEN = re.compile(r"(?<![\w./+-])" + _NUMBER + r"\s*(?:/|out\s+of)\s*10(?![\d/]|\.\d)", re.IGNORECASE)

# Tier 4, the whole reply is the verdict, or it ends with one bracketed number: "8", "**8**", "... [7]".
_WHOLE = re.compile(r"^[\s*_\"'`]*" + _NUMBER + r"[\s*_.\"'`]*$")
_FINAL_BRACKET = re.compile(r"\[\s*" + _NUMBER + r"\s*\][\s*_.\"'`]*$")

# "for example: "Rating: [[5]]"" is the prompt's own example echoed back, not a verdict.
_EXAMPLE_BEFORE = re.compile(r"(?:example|e\.g\.)[\s:,\"'`“”*]*(?:rating[\s:*]*)?$", re.IGNORECASE)


def _last_verdict(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for match in pattern.finditer(text):
        if not _EXAMPLE_BEFORE.search(text[max(0, match.start() - 40) : match.start()]):
            last = match
    return last


def parse_rating(text: str | None, *, low: float = 1.0, high: float = 10.0) -> float:
    """The rating a judge gave in ``text``, or NaN when there is none or it is outside [``low``, ``high``].

    Reads the FastChat ``[[7]]`` format first (its last occurrence), then common variants: a number
    right after a rating cue (``Rating: 7``, ``**Rating:** 7/10``, ``Score: 8 out of 10``, ``rating of
    6``), a bare ``7/10``, and a reply that is only a number or ends with ``[7]``. Numbers in the
    body of a verdict with no rating cue ("The answer is 42.") are not read; a score on another
    scale (``4/5``), a range (``7-8``), an unclosed ``[[7`` and a placeholder (``[[rating]]``) are refused.
    """
    if not isinstance(text, str) or not text.strip():
        return math.nan
    for pattern in (_BRACKETED, _CUED, _ON_TEN, _WHOLE, _FINAL_BRACKET):
        match = _last_verdict(pattern, text)
        if match is None:
            continue
        denominator = match.groupdict().get("den")
        if denominator is not None and float(denominator) != 10:
            return math.nan
        value = float(match.group("n"))
        return value if low <= value <= high else math.nan
    return math.nan


# --- The scorer ------------------------------------------------------------------------------------------------


@contextmanager
def _sample_seed(generator: Generator, sample: int) -> Iterator[None]:
    """Shift the generator's seed by ``sample`` for one call, so that each sample draws (and is cached) apart.

    The generator object itself is reused (a local model stays loaded); its seed is put back after.
    """
    seed = getattr(generator, "seed", None)
    if sample == 0 or not isinstance(seed, int):
        yield
        return
    generator.seed = seed + sample
    try:
        yield
    finally:
        generator.seed = seed


def _add_stats(total: GenerationStats, part: GenerationStats) -> None:
    for name in ("requests", "cache_hits", "succeeded", "failed", "retries", "tokens_in", "tokens_out"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.errors.extend(part.errors[: max(0, 50 - len(total.errors))])


def samples_error(samples: int, temperature: float | None) -> str | None:
    """Why ``samples`` verdicts per response cannot be drawn at ``temperature``, or None."""
    if samples < 1:
        return f"judge_samples must be >= 1, got {samples} (--judge-samples)"
    if samples > 1 and temperature is not None and temperature <= 0:
        return (
            f"--judge-samples {samples} needs sampling: greedy verdicts (--judge-temperature 0) are identical, so "
            "set --judge-temperature > 0 (and --judge-generation-seed to make the samples reproducible and cacheable)"
        )
    return None


@dataclass
class JudgeOptions:
    generation: GeneratorOptions = option(GeneratorOptions(max_new_tokens=384), "the judge model")
    samples: int = option(1, "verdicts per response, their median is the score (>1 needs temperature)")
    prompts: str | None = option(
        None, "FastChat judge_prompts.jsonl to take single-v1 from (default: the copy admap ships)"
    )


@SCORERS.register("judge")
@dataclass
class JudgeScorer(ScorerDefaults):
    """A judge LLM's 1-10 rating of each response (MT-Bench single-v1); the median of ``samples`` verdicts.

    ``scope`` (optional, e.g. the run directory) lets sampled verdicts of a non-deterministic judge
    be cached for that run, so that rerunning it resumes; deterministic verdicts are cached for all
    runs without it. After `score`, ``verdicts`` holds every verdict (``response_id``, ``sample``,
    ``verdict`` text, parsed ``rating``, generation ``error``) and ``generation_stats`` the counts.
    """

    name: ClassVar[str] = "judge"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = JudgeOptions

    generator: Generator
    prompt: JudgePrompt = DEFAULT_JUDGE_PROMPT
    samples: int = 1
    cache: bool = True
    cache_dir: str | None = None
    scope: str | None = None
    verdicts: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=VERDICT_COLUMNS), init=False, repr=False
    )
    generation_stats: GenerationStats | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.generator is None:
            raise ValueError("scorer judge needs a judge model: set --judge-generator (transformers, openai, vllm)")
        problem = samples_error(self.samples, getattr(self.generator, "temperature", None))
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_options(cls, options: JudgeOptions, context: ScoringContext) -> JudgeScorer:
        """The judge of ``options.generation`` (its progress bar follows the context's)."""
        generation = options.generation
        problem = samples_error(options.samples, generation.temperature)
        if problem:
            raise ValueError(problem)
        prompt = load_judge_prompt(options.prompts)
        generator = build_generator(generation, device=context.device, progress=context.progress)
        if generator is None:
            raise ValueError("scorer judge needs a judge model: --judge-generator none judges nothing")
        return cls(
            generator=generator,
            prompt=prompt,
            samples=options.samples,
            cache=generation.cache,
            cache_dir=generation.cache_dir,
        )

    @property
    def model(self) -> str:
        return f"{self.generator.name}:{self.generator.model}"

    def label(self) -> str:
        return f"{self.name} ({self.model})"

    def report(self) -> dict:
        return {
            "model": self.model,
            "samples": self.samples,
            "prompt": self.prompt.name,
            "generation": self.generation_stats.to_dict() if self.generation_stats else None,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every raw verdict, kept beside the scores for audit."""
        return {"judgments.parquet": self.verdicts}

    def _sample_scope(self, sample: int) -> str | None:
        if self.scope is None:
            return None
        return self.scope if self.samples == 1 else f"{self.scope}#judge-sample-{sample}"

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        questions = instructions.set_index("instruction_id")["instruction"]
        question_of = responses["instruction_id"].map(questions)
        answers = responses["response"]
        judgeable = (question_of.notna() & answers.notna()).to_numpy()
        if (~judgeable).any():
            logger.warning("judge: %d responses have no instruction or no text and stay unscored", (~judgeable).sum())

        # One judge conversation per distinct (question, answer); duplicates share a verdict.
        conversation_of: dict[tuple[str, str], int] = {}
        conversations: list[list[dict[str, str]]] = []
        row_conversation = np.full(len(responses), -1, dtype=np.int64)
        for row in np.flatnonzero(judgeable):
            pair = (str(question_of.iloc[row]), str(answers.iloc[row]))
            if pair not in conversation_of:
                conversation_of[pair] = len(conversations)
                conversations.append(self.prompt.messages(*pair))
            row_conversation[row] = conversation_of[pair]

        cache = ResponseCache(self.cache_dir) if self.cache else None
        self._check_samples_differ()
        rows = np.flatnonzero(judgeable)
        ratings = np.full((len(responses), self.samples), np.nan, dtype=np.float64)
        stats = GenerationStats()
        tables = []
        for sample in range(self.samples):
            completions: list[Completion] = []
            if conversations:
                with _sample_seed(self.generator, sample):
                    completions, part = generate_cached(
                        self.generator, conversations, cache=cache, scope=self._sample_scope(sample)
                    )
                _add_stats(stats, part)
            texts = np.array([c.text for c in completions] + [None], dtype=object)
            errors = np.array([c.error for c in completions] + ["no instruction or no response text"], dtype=object)
            parsed = np.array([parse_rating(c.text) for c in completions] + [math.nan], dtype=np.float64)
            # Row -1 (not judged) reads the sentinel entry at the end of each array.
            ratings[:, sample] = parsed[row_conversation]
            tables.append(
                pd.DataFrame(
                    {
                        "instruction_id": responses["instruction_id"].to_numpy(),
                        "response_id": responses["response_id"].to_numpy()
                        if "response_id" in responses
                        else np.arange(len(responses)),
                        "sample": sample,
                        "verdict": texts[row_conversation],
                        "rating": ratings[:, sample],
                        "error": errors[row_conversation],
                    }
                )
            )
        self.generation_stats = stats
        self.verdicts = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=VERDICT_COLUMNS)

        with _quiet_nanmedian():
            scores = np.nanmedian(ratings, axis=1)
        judged = len(rows) * self.samples
        judged_verdicts = self.verdicts[np.tile(judgeable, self.samples)]
        failed = int(judged_verdicts["verdict"].isna().sum())
        unparsable = int((judged_verdicts["verdict"].notna() & judged_verdicts["rating"].isna()).sum())
        logger.info(
            "judge: %d verdicts (%d from the cache), %d failed, %d unparsable; %d of %d responses scored",
            judged,
            stats.cache_hits,
            failed,
            unparsable,
            int(np.isfinite(scores).sum()),
            len(responses),
        )
        if unparsable:
            logger.warning(
                "judge: %d of %d verdicts had no readable 1-10 rating (scored as missing, not 0)", unparsable, judged
            )
        return scores.astype(np.float32)

    def _check_samples_differ(self) -> None:
        """Several samples from a judge that always answers alike would be one verdict counted many times."""
        if self.samples == 1 or not self.generator.deterministic:
            return
        identities = set()
        for sample in range(self.samples):
            with _sample_seed(self.generator, sample):
                identities.add(repr(sorted(self.generator.identity().items())))
        if len(identities) < self.samples:
            raise ValueError(
                f"judge_samples {self.samples}: the judge {self.generator.name} is deterministic and has no seed "
                "to vary per sample, so every sample would be the same verdict; use --judge-samples 1"
            )


@contextmanager
def _quiet_nanmedian() -> Iterator[None]:
    """``np.nanmedian`` warns on all-NaN rows, which here are simply unscored responses."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
