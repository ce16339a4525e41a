"""vLLM's offline engine, for generation on GPU machines where vLLM is installed (`pip install 'admap[vllm]'`:
the vLLM releases that keep admap's torch).

For a vLLM *server*, use the ``openai`` generator with ``--base-url http://HOST:8000/v1`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from admap.generate.base import GENERATORS, Completion, Messages, ResultCallback
from admap.generate.options import GeneratorOptions


@GENERATORS.register("vllm")
@dataclass
class VLLMGenerator:
    model: str
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    dtype: str = "auto"
    # Not in identity(): how much memory the engine takes does not change its replies.
    gpu_memory_utilization: float = 0.9
    progress: bool = True
    name: str = "vllm"

    def __post_init__(self) -> None:
        self._engine = None

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True):
        return cls(
            **options.sampling(),
            dtype=options.dtype,
            gpu_memory_utilization=options.gpu_memory_utilization,
            progress=progress,
        )

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def identity(self) -> dict:
        return {
            "generator": self.name,
            "model": self.model,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "dtype": self.dtype,
        }

    def _load(self):
        if self._engine is None:
            try:
                from vllm import LLM
            except ImportError as error:
                raise ImportError(
                    "generator 'vllm' needs vLLM (pip install 'admap[vllm]', on a CUDA machine); for a vLLM server use "
                    "--generator openai --base-url http://HOST:8000/v1"
                ) from error
            self._engine = LLM(
                model=self.model,
                dtype=self.dtype,
                seed=self.seed or 0,
                gpu_memory_utilization=self.gpu_memory_utilization,
            )
        return self._engine

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        from vllm import SamplingParams

        engine = self._load()
        sampling = SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_new_tokens, seed=self.seed
        )
        outputs = engine.chat([list(c) for c in conversations], sampling, use_tqdm=self.progress)
        results = []
        for position, output in enumerate(outputs):
            reply = output.outputs[0]
            text = reply.text.strip()
            completion = Completion(
                text=text or None,
                tokens_in=len(output.prompt_token_ids or []),
                tokens_out=len(reply.token_ids),
                error=None if text else "empty reply",
            )
            results.append(completion)
            if on_result is not None:
                on_result(position, completion)
        return results
