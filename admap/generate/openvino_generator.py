"""GGUF models through OpenVINO GenAI (``pip install 'admap[openvino]'``): continuous batching on the CPU.

OpenVINO GenAI reads the GGUF file itself and serves it with a scheduler built for many requests: paged
KV cache, prompts and replies of many requests decoded in the same step, bf16 where the CPU computes it
(AMX, AVX-512 BF16) and f32 elsewhere. Replies follow transformers' rules so that the backends answer
alike: prompts are written and tokenized by transformers' tokenizer of the same GGUF file (OpenVINO's own
merges some whitespace differently), greedy decoding, and the repetition penalty over every token of the
sequence, prompt included. Each request has its own sequence: no reply reads another's tokens, though the
numbers a batch step computes may differ in their last bits from a lone request's.

The replies are not transformers' or llama.cpp's: OpenVINO's import of the GGUF file computes other logits
(in f32 too, with its KV cache and activations unquantised), so greedy texts part from the first tokens
while the other two agree on theirs. README and results/generation give the agreement measured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from admap.config import option
from admap.generate.base import GENERATORS, Completion, Messages, ResultCallback
from admap.generate.gguf_engine import GgufEngine
from admap.models import gguf_tokenizer
from admap.progress import stage_bar

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'admap[openvino]' (OpenVINO GenAI's wheels: about 200 MB, no compiler)"
PRECISIONS = ("auto", "f32", "bf16")


@dataclass
class OpenVinoOptions:
    threads: int | None = option(None, "CPU threads (default: every core this process may use)")
    precision: str = option(
        "auto", "inference precision: auto (the device's own: bf16 with AMX or AVX-512 BF16), f32, bf16"
    )
    batch_tokens: int = option(8192, "tokens the scheduler computes in one step, prompts and replies together")
    sequences: int = option(256, "requests decoded together; more wait in a queue")
    cache_gb: int = option(1, "KV cache in GB (SmolLM2: about 23 KB a token in bf16)")
    context_tokens: int = option(8192, "longest prompt and reply together (SmolLM2's window: 8192)")


@GENERATORS.register("openvino")
@dataclass
class OpenVinoGenerator(GgufEngine):
    """Continuous batching through OpenVINO GenAI; greedy unless ``temperature`` > 0."""

    Options: ClassVar[type] = OpenVinoOptions

    options: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    name: str = "openvino"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.options.precision not in PRECISIONS:
            raise ValueError(f"openvino precision must be one of {PRECISIONS}, got {self.options.precision!r}")
        for name in ("threads", "batch_tokens", "sequences", "cache_gb", "context_tokens"):
            value = getattr(self.options, name)
            if value is not None and value <= 0:
                raise ValueError(f"openvino {name} must be > 0, got {value}")

    @property
    def deterministic(self) -> bool:
        # A sampled reply depends on the scheduler's order of work, so only greedy replies are reproducible.
        return self.temperature == 0

    def identity(self) -> dict:
        # The precision changes the reply (bf16 and f32 greedy texts part after a few tokens).
        return {**super().identity(), "precision": self.precision()}

    def precision(self) -> str:
        """The precision the CPU computes in: the option, or for ``auto`` the device's default."""
        if self.options.precision != "auto":
            return self.options.precision
        openvino = _import("openvino")
        return openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()

    def report(self) -> dict:
        """What summaries record beside the label: the file, the engine's version and its settings."""
        from importlib.metadata import version

        return {
            "gguf_file": os.path.basename(self.gguf_file()),
            "openvino_genai": version("openvino-genai"),
            "precision": self.precision(),
            "threads": self._threads(),
            "batch_tokens": self.options.batch_tokens,
            "sequences": self.options.sequences,
            "cache_gb": self.options.cache_gb,
        }

    def _threads(self) -> int:
        return self.options.threads or len(os.sched_getaffinity(0))

    def _load(self):
        if self._loaded is None:
            genai = _import("openvino_genai")
            scheduler = genai.SchedulerConfig()
            scheduler.max_num_batched_tokens = self.options.batch_tokens
            scheduler.max_num_seqs = self.options.sequences
            scheduler.cache_size = self.options.cache_gb
            scheduler.dynamic_split_fuse = True  # long prompts are cut into steps beside running replies
            properties = {"INFERENCE_NUM_THREADS": self._threads()}
            if self.options.precision != "auto":
                properties["INFERENCE_PRECISION_HINT"] = self.options.precision
            path = self.gguf_file()
            logger.info("loading %s with OpenVINO GenAI (%s, %d threads)", path, self.precision(), self._threads())
            pipeline = genai.ContinuousBatchingPipeline(path, scheduler, "CPU", properties)
            self._loaded = genai, pipeline, gguf_tokenizer(os.path.dirname(path), os.path.basename(path))
        return self._loaded

    def _generation_config(self, pipeline):
        config = pipeline.get_config()  # the model's own: its end-of-turn token stops a reply
        config.max_new_tokens = self.max_new_tokens
        config.repetition_penalty = self.repetition_penalty
        config.do_sample = self.temperature > 0
        if self.temperature > 0:
            config.temperature = self.temperature
            config.top_p = self.top_p
            if self.seed is not None:
                config.rng_seed = self.seed
        return config

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        genai, pipeline, tokenizer = self._load()
        openvino = _import("openvino")
        config = self._generation_config(pipeline)
        stop_tokens = set(config.stop_token_ids) | {config.eos_token_id}
        results: list[Completion | None] = [None] * len(conversations)

        def finish(position: int, completion: Completion) -> None:
            results[position] = completion
            if on_result is not None:
                on_result(position, completion)
            bar.update(1)

        waiting = iter(enumerate(conversations))
        running: dict[int, tuple[object, int]] = {}  # position -> (handle, prompt tokens)
        with stage_bar(f"generating ({self.model})", len(conversations), unit=" replies", enabled=self.progress) as bar:
            while True:
                # A window of requests in the scheduler (its own batch and one more): each step checks only these.
                for position, conversation in waiting:
                    prompt = tokenizer.apply_chat_template(
                        list(conversation), tokenize=False, add_generation_prompt=True
                    )
                    tokens = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                    tokens_in = len(tokens)
                    error = self.context_error(tokens_in)
                    if error is not None:
                        finish(position, Completion(text=None, tokens_in=tokens_in, error=error))
                        continue
                    request = openvino.Tensor(np.array([tokens], dtype=np.int64))
                    running[position] = (pipeline.add_request(position, request, config), tokens_in)
                    if len(running) >= 2 * self.options.sequences:
                        break
                if not running:
                    break
                pipeline.step()
                for position, (handle, tokens_in) in list(running.items()):
                    status = handle.get_status()
                    if status == genai.GenerationStatus.RUNNING:
                        continue
                    del running[position]
                    finish(position, self._completion(handle, status, tokens_in, tokenizer, stop_tokens, genai))
        return results

    def _completion(self, handle, status, tokens_in: int, tokenizer, stop_tokens: set[int], genai) -> Completion:
        if status != genai.GenerationStatus.FINISHED:  # IGNORED: no room in the KV cache for the prompt
            return Completion(text=None, tokens_in=tokens_in, error=f"not generated ({status.name.lower()})")
        reply = [token for token in handle.read_all()[0].generated_ids if token not in stop_tokens]
        text = tokenizer.decode(reply, skip_special_tokens=True).strip()
        return Completion(
            text=text or None, tokens_in=tokens_in, tokens_out=len(reply), error=None if text else "empty reply"
        )


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"generator 'openvino' needs OpenVINO GenAI: {INSTALL_HINT}") from error
