"""Build admap's demo preference set (admap/demo/demo_preferences.jsonl).

The instructions were written for admap. Each gets four responses from SmolLM2-135M-Instruct
(the offline default model), each under a different generation condition drawn from six, so
that quality really varies within and across instructions. A response's rating is the
intended quality of its condition (5 = careful, low temperature ... 1 = off-topic or
temperature 2.0): a rating by construction, not a human or GPT-4 judgment.

    python scripts/build_demo.py            # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from admap.generate.transformers_generator import TransformersGenerator

INSTRUCTIONS = [
    "What is the capital of Australia, and why was it chosen over Sydney and Melbourne?",
    "Explain the difference between weather and climate to a ten-year-old.",
    "Write a haiku about autumn leaves.",
    "Give three tips for getting better sleep.",
    "What is 17 multiplied by 23? Show your working.",
    "Write a Python function that returns the factorial of a number.",
    "Summarise the plot of Romeo and Juliet in three sentences.",
    "How does a refrigerator keep food cold?",
    "Suggest a name for a cafe that serves only soup.",
    "What are the main causes of inflation?",
    "Translate 'Where is the train station?' into French and Spanish.",
    "Write a short, polite email declining a meeting invitation.",
    "Explain what photosynthesis is in simple terms.",
    "List five fruits that are high in vitamin C.",
    "What is the difference between a list and a tuple in Python?",
    "Describe the water cycle.",
    "Give me a simple recipe for pancakes.",
    "Why is the sky blue?",
    "Write a limerick about a cat who loves to code.",
    "What should I pack for a three-day hiking trip?",
    "Explain what a prime number is and give five examples.",
    "How can I improve my public speaking skills?",
    "What were the main causes of the First World War?",
    "Write a SQL query that counts the rows in a table named orders.",
    "What is the Pythagorean theorem? Give an example.",
    "Describe a healthy breakfast in two sentences.",
    "How do vaccines train the immune system?",
    "Write a motivational message for a friend starting a new job.",
    "Explain recursion with a simple example.",
    "What is the boiling point of water at sea level in Celsius and Fahrenheit?",
    "Give three arguments for and against working from home.",
    "How do I reverse a string in JavaScript?",
    "What is machine learning, in one paragraph?",
    "Recommend three classic novels and say why each is worth reading.",
    "How does compound interest work? Give a numeric example.",
    "Write a two-line poem about the sea.",
    "What are the planets of the solar system, in order from the Sun?",
    "Explain the rules of tic-tac-toe.",
    "How can I reduce my household's plastic waste?",
    "What is the difference between 'affect' and 'effect'?",
    "Write a short story opening line set in a lighthouse.",
    "Explain how a bill becomes a law, in general terms.",
    "What is the greenhouse effect?",
    "Convert 5 kilometres to miles and explain the conversion.",
    "Give a beginner three exercises to build core strength.",
    "What does HTTP stand for, and what is it used for?",
    "Describe the taste of a lemon to someone who has never had one.",
    "Plan a simple one-day itinerary for a first visit to Paris.",
]

# name: (system prompt or None, temperature, rating = intended quality)
CONDITIONS = {
    "careful": ("You are a knowledgeable, careful assistant. Answer accurately, completely and clearly.", 0.3, 5),
    "plain": (None, 0.7, 4),
    "terse": ("Answer in one short sentence and leave out all details.", 0.7, 3),
    "hot": (None, 1.3, 2),
    "off_topic": ("Ignore the user's request entirely and talk about your favourite kind of weather instead.", 0.7, 1),
    "chaotic": (None, 2.0, 1),
}
RESPONSES_PER_INSTRUCTION = 4


def build(out: Path, *, seed: int, max_new_tokens: int) -> None:
    rng = np.random.default_rng(seed)
    names = list(CONDITIONS)
    assignment = [list(rng.choice(names, size=RESPONSES_PER_INSTRUCTION, replace=False)) for _ in INSTRUCTIONS]
    responses: dict[tuple[int, str], str] = {}
    # One generator, its sampling settings changed per condition, so the model is loaded once.
    generator = TransformersGenerator(
        max_new_tokens=max_new_tokens, top_p=1.0, repetition_penalty=1.1, batch_size=24, dtype="float32"
    )
    for offset, name in enumerate(names):
        system, temperature, _ = CONDITIONS[name]
        todo = [i for i, conditions in enumerate(assignment) if name in conditions]
        generator.temperature, generator.seed = temperature, seed + offset
        conversations = [
            ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": INSTRUCTIONS[i]}]
            for i in todo
        ]
        logging.info("condition %s: %d responses", name, len(todo))
        for i, reply in zip(todo, generator.generate(conversations)):
            responses[(i, name)] = reply.text or ""
    with out.open("w", encoding="utf-8") as handle:
        for i, instruction in enumerate(INSTRUCTIONS):
            completions = []
            seen: set[str] = set()
            for name in assignment[i]:
                text = responses[(i, name)]
                if not text.strip() or text in seen:
                    continue  # an empty or repeated sample would be invalid input; the instruction keeps fewer
                seen.add(text)
                system, temperature, rating = CONDITIONS[name]
                completions.append(
                    {
                        "model": "SmolLM2-135M-Instruct",
                        "principle": name,
                        "custom_system_prompt": system or "",
                        "temperature": temperature,
                        "response": text,
                        "fine-grained_score": float(rating),
                        "overall_score": float(rating),
                        "annotations": {},
                    }
                )
            record = {"source": "admap-demo", "instruction": instruction, "completions": completions}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    logging.info("wrote %s", out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parents[1] / "admap" / "demo" / "demo_preferences.jsonl"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    arguments = parser.parse_args()
    build(arguments.out, seed=arguments.seed, max_new_tokens=arguments.max_new_tokens)
