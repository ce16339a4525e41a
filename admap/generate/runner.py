"""Run a generator over many conversations through the cache, and count what happened."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from admap.generate.base import GENERATORS, Completion, Generator, Messages
from admap.generate.cache import ResponseCache, request_key
from admap.generate.options import GeneratorOptions

logger = logging.getLogger(__name__)
MAX_LISTED_ERRORS = 50


@dataclass
class GenerationStats:
    requests: int = 0
    cache_hits: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    errors: list[dict] = field(default_factory=list)

    def add(self, index: int, completion: Completion) -> None:
        self.requests += 1
        if completion.cached:
            self.cache_hits += 1
        if completion.ok:
            self.succeeded += 1
        else:
            self.failed += 1
            if len(self.errors) < MAX_LISTED_ERRORS:
                self.errors.append({"index": index, "error": completion.error})
        self.retries += completion.retries
        if not completion.cached:
            self.tokens_in += completion.tokens_in
            self.tokens_out += completion.tokens_out

    def price(self, input_per_million: float | None, output_per_million: float | None) -> None:
        if input_per_million is not None or output_per_million is not None:
            self.cost = (
                self.tokens_in * (input_per_million or 0.0) + self.tokens_out * (output_per_million or 0.0)
            ) / 1e6

    def to_dict(self) -> dict:
        return asdict(self)


def build_generator(options: GeneratorOptions, *, device: str = "auto", progress: bool = True) -> Generator | None:
    if options.generator == "none":
        return None
    return GENERATORS.get(options.generator).from_options(options, device=device, progress=progress)


def generate_cached(
    generator: Generator,
    conversations: Sequence[Messages],
    *,
    cache: ResponseCache | None,
    scope: str | None = None,
) -> tuple[list[Completion], GenerationStats]:
    """Replies to every conversation, from the cache where possible; each new reply is cached as it arrives.

    Replies to deterministic requests are cached for every later run. Other replies are cached
    under ``scope`` (the output they belong to) so that rerunning the same command resumes,
    while another run still samples afresh; without a scope they are not cached.
    """
    identity = generator.identity()
    cacheable = cache is not None and (generator.deterministic or scope is not None)
    keys = [
        request_key(identity, list(c), None if generator.deterministic else scope) if cacheable else None
        for c in conversations
    ]
    results: list[Completion | None] = [cache.get(k) if cacheable else None for k in keys]
    missing = [i for i, r in enumerate(results) if r is None]
    if cacheable:
        logger.info(
            "%d of %d replies from the cache %s", len(conversations) - len(missing), len(conversations), cache.root
        )

    def on_result(position: int, completion: Completion) -> None:
        index = missing[position]
        results[index] = completion
        if cacheable:
            cache.put(keys[index], completion)

    if missing:
        returned = generator.generate([conversations[i] for i in missing], on_result=on_result)
        for position, completion in enumerate(returned):
            if results[missing[position]] is None:  # a generator that reports only at the end
                on_result(position, completion)
    stats = GenerationStats()
    for index, completion in enumerate(results):
        assert completion is not None, "a generator must report every request"
        stats.add(index, completion)
    return results, stats
