"""GGUF models through llama.cpp (``pip install 'admap[llama_cpp]'``): the packaged SmolLM2 at CPU-engine speed.

llama.cpp runs the quantised GGUF weights as they are (no dequantised copy), with its own CPU kernels.
Replies are decoded here, one prompt at a time, with transformers' rules so that the two backends
answer alike: the model's own chat template, greedy decoding, and the repetition penalty over every
token of the sequence, prompt included (llama.cpp's sampler would count only the last 64 generated
ones). Each prompt starts from an empty context, so a reply never depends on the prompt before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from admap.config import option
from admap.generate.base import GENERATORS, Completion, Messages, ResultCallback
from admap.generate.gguf_engine import GgufEngine
from admap.progress import stage_bar

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'admap[llama_cpp]' (builds llama.cpp with the C++ compiler: about 10 minutes on 2 cores)"


@dataclass
class LlamaCppOptions:
    threads: int | None = option(None, "CPU threads for llama.cpp (default: every core this process may use)")
    context_tokens: int = option(8192, "context window in tokens, prompt and reply together (SmolLM2's: 8192)")


@GENERATORS.register("llama_cpp")
@dataclass
class LlamaCppGenerator(GgufEngine):
    """One prompt at a time through llama.cpp; greedy unless ``temperature`` > 0."""

    Options: ClassVar[type] = LlamaCppOptions

    options: LlamaCppOptions = field(default_factory=LlamaCppOptions)
    name: str = "llama_cpp"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.options.threads is not None and self.options.threads < 1:
            raise ValueError(f"llama_cpp threads must be >= 1, got {self.options.threads}")
        if self.options.context_tokens < 1:
            raise ValueError(f"llama_cpp context_tokens must be >= 1, got {self.options.context_tokens}")

    @property
    def deterministic(self) -> bool:
        # Each prompt is decoded alone with a sampler of its own, so a seeded sampled reply is reproducible too.
        return self.temperature == 0 or self.seed is not None

    def report(self) -> dict:
        """What summaries record beside the label: the file, the engine's version and its CPU settings."""
        from importlib.metadata import version

        return {
            "gguf_file": os.path.basename(self.gguf_file()),
            "llama_cpp_python": version("llama-cpp-python"),
            "threads": self._threads(),
            "context_tokens": self.options.context_tokens,
        }

    def _threads(self) -> int:
        return self.options.threads or len(os.sched_getaffinity(0))

    def _load(self):
        if self._loaded is None:
            # llama.cpp's OpenMP threads spin while they wait; on a shared 2-core machine a spinning thread
            # starves the other one (2 threads ran 10x slower than 1 under load). Read when llama.cpp loads libgomp.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from llama_cpp import Llama
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter
            except ImportError as error:
                raise ImportError(f"generator 'llama_cpp' needs llama-cpp-python: {INSTALL_HINT}") from error
            path = self.gguf_file()
            logger.info("loading %s with llama.cpp (%d threads)", path, self._threads())
            with _plain_weight_buffers():
                llm = Llama(
                    model_path=path,
                    n_ctx=self.options.context_tokens,
                    n_threads=self._threads(),
                    n_threads_batch=self._threads(),
                    verbose=False,
                )
            template = Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=llm.detokenize([llm.token_eos()], special=True).decode("utf-8"),
                bos_token=llm.detokenize([llm.token_bos()], special=True).decode("utf-8"),
            )
            self._loaded = llm, template
        return self._loaded

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        llm, template = self._load()
        results = []
        with stage_bar(f"generating ({self.model})", len(conversations), unit=" replies", enabled=self.progress) as bar:
            for position, conversation in enumerate(conversations):
                completion = self._reply(llm, template, conversation)
                results.append(completion)
                if on_result is not None:
                    on_result(position, completion)
                bar.update(1)
        return results

    def _reply(self, llm, template, conversation: Messages) -> Completion:
        import llama_cpp

        prompt = template(messages=list(conversation)).prompt
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        # The window asked for, not llm.n_ctx(): llama.cpp may round its own up, but the Python side keeps this many.
        error = self.context_error(len(tokens))
        if error is not None:
            return Completion(text=None, tokens_in=len(tokens), error=error)
        rng = np.random.default_rng(self.seed)
        seen = np.zeros(llm.n_vocab(), dtype=bool)
        seen[tokens] = True
        llm.reset()
        reply: list[int] = []
        batch = tokens
        for _ in range(self.max_new_tokens):
            llm.eval(batch)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            token = self._next_token(logits.copy(), seen, rng)
            if token == llm.token_eos():
                break
            reply.append(token)
            seen[token] = True
            batch = [token]
        text = llm.detokenize(reply).decode("utf-8", errors="replace").strip()
        return Completion(
            text=text or None, tokens_in=len(tokens), tokens_out=len(reply), error=None if text else "empty reply"
        )

    def _next_token(self, logits: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> int:
        # transformers' RepetitionPenaltyLogitsProcessor: shrink the logit of every token already present.
        if self.repetition_penalty != 1.0:
            penalised = logits[seen]
            logits[seen] = np.where(
                penalised < 0, penalised * self.repetition_penalty, penalised / self.repetition_penalty
            )
        if self.temperature == 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        probabilities = np.exp(scaled - scaled.max())
        probabilities /= probabilities.sum()
        order = np.argsort(-probabilities)
        kept = order[: int(np.searchsorted(np.cumsum(probabilities[order]), self.top_p)) + 1]
        return int(rng.choice(kept, p=probabilities[kept] / probabilities[kept].sum()))


@contextlib.contextmanager
def _plain_weight_buffers() -> Iterator[None]:
    """Load weights into plain CPU buffers, not llama.cpp's "extra" ones (AMX tiles, repacked layouts).

    On AMX CPUs llama.cpp puts the Q4_1 weights in its AMX buffer, whose matmul crashes the process with a
    segmentation fault on this project's machines (llama-cpp-python 0.3.36); Q4_1 has no repacked layout, so
    plain buffers cost nothing else. `Llama` takes no such argument, so its default model parameters are
    changed while it loads.
    """
    import llama_cpp.llama_cpp as low_level

    defaults = low_level.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        low_level.llama_model_default_params = defaults
