"""The MT-Bench single-answer grading prompt (``single-v1``) that the judge scorer sends.

The system prompt and template below are copied verbatim from FastChat's
``fastchat/llm_judge/data/judge_prompts.jsonl`` (entry ``single-v1``), https://github.com/lm-sys/FastChat,
Copyright the FastChat authors, licensed under the Apache License, Version 2.0
(http://www.apache.org/licenses/LICENSE-2.0). They are shipped here so that the scorer works
without that file; ``--judge-prompts`` reads the entry from another copy of it instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SINGLE_V1 = "single-v1"

# --- Begin FastChat (Apache-2.0), fastchat/llm_judge/data/judge_prompts.jsonl, "single-v1" ---
SINGLE_V1_SYSTEM_PROMPT = "You are a helpful assistant."
SINGLE_V1_TEMPLATE = (
    "[Instruction]\n"
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by "
    "providing a short explanation. Be as objective as possible. After providing your explanation, you must "
    'rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: '
    '"Rating: [[5]]".\n\n'
    "[Question]\n{question}\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
SINGLE_V1_OUTPUT_FORMAT = "[[rating]]"
# --- End FastChat ---


@dataclass(frozen=True)
class JudgePrompt:
    """A single-answer grading prompt: ``template`` holds ``{question}`` and ``{answer}``."""

    name: str
    system_prompt: str
    template: str
    output_format: str = SINGLE_V1_OUTPUT_FORMAT
    source: str = "admap (FastChat single-v1)"

    def __post_init__(self) -> None:
        for field in ("{question}", "{answer}"):
            if field not in self.template:
                raise ValueError(f"judge prompt {self.name!r} ({self.source}): its template has no {field}")

    def messages(self, question: str, answer: str) -> list[dict[str, str]]:
        """The judge conversation for one answer (one format pass, so braces in the texts stay as they are)."""
        user = self.template.format(question=question, answer=answer)
        messages = [{"role": "user", "content": user}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages


DEFAULT_JUDGE_PROMPT = JudgePrompt(SINGLE_V1, SINGLE_V1_SYSTEM_PROMPT, SINGLE_V1_TEMPLATE)


def load_judge_prompt(path: str | Path | None = None, name: str = SINGLE_V1) -> JudgePrompt:
    """The shipped ``single-v1`` prompt, or entry ``name`` of a FastChat ``judge_prompts.jsonl`` at ``path``."""
    if path is None:
        if name != SINGLE_V1:
            raise ValueError(
                f"admap ships only the {SINGLE_V1!r} judge prompt; pass a judge_prompts.jsonl for {name!r}"
            )
        return DEFAULT_JUDGE_PROMPT
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"cannot read the judge prompts {path}: {error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not JSON ({error})") from error
        if not isinstance(entry, dict) or entry.get("name") != name:
            continue
        missing = [key for key in ("prompt_template",) if not isinstance(entry.get(key), str)]
        if missing:
            raise ValueError(f"{path}, line {number}: entry {name!r} has no {', '.join(missing)}")
        return JudgePrompt(
            name=name,
            system_prompt=entry.get("system_prompt") or "",
            template=entry["prompt_template"],
            output_format=entry.get("output_format") or SINGLE_V1_OUTPUT_FORMAT,
            source=str(path),
        )
    raise ValueError(f"{path} has no judge prompt named {name!r}")
