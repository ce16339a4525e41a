"""Writes admap_quantities.jsonl: 100 four-choice questions on arithmetic, units and ordering, drawn from a
seeded generator so that the file is the same on every run (tests/test_lm_evaluation.py checks it byte for byte).

    python experiments/lm_eval_tasks/make_admap_quantities.py [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 20250528
ITEMS_PER_KIND = 20
DATA_FILE = Path(__file__).with_name("admap_quantities.jsonl")

# (larger unit, smaller unit, how many of the smaller make one of the larger)
UNITS = [
    ("metres", "centimetres", 100),
    ("kilometres", "metres", 1000),
    ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("years", "months", 12),
    ("dozen", "eggs", 12),
]


def near_misses(answer: int, rng: random.Random, candidates: list[int]) -> list[str]:
    """Three distinct wrong answers: ``candidates`` first (the slips people make), then offsets of ``answer``."""
    wrong: list[int] = []
    for value in candidates + [answer + offset for offset in rng.sample([-11, -10, -2, -1, 1, 2, 10, 11], 8)]:
        if value != answer and value >= 0 and value not in wrong:
            wrong.append(value)
    return [str(value) for value in wrong[:3]]


def addition(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(12, 89), rng.randint(12, 89)
    answer = a + b
    return f"What is {a} + {b}?", str(answer), near_misses(answer, rng, [answer + 10, answer - 10])


def subtraction(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(40, 99), rng.randint(11, 39)
    answer = a - b
    return f"What is {a} - {b}?", str(answer), near_misses(answer, rng, [a + b, answer + 10])


def multiplication(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(3, 12), rng.randint(3, 12)
    answer = a * b
    return f"What is {a} times {b}?", str(answer), near_misses(answer, rng, [a + b, answer + a, answer - b])


def conversion(rng: random.Random) -> tuple[str, str, list[str]]:
    larger, smaller, factor = rng.choice(UNITS)
    count = rng.randint(2, 9)
    answer = count * factor
    question = f"How many {smaller} are there in {count} {larger}?"
    return question, str(answer), near_misses(answer, rng, [count * factor * 10, count * factor // 10, count + factor])


def ordering(rng: random.Random) -> tuple[str, str, list[str]]:
    numbers = rng.sample(range(10, 1000), 4)
    largest = rng.random() < 0.5
    answer = max(numbers) if largest else min(numbers)
    # The numbers are in the question: a log-likelihood task scores each choice alone, unseen by the others.
    listed = ", ".join(str(n) for n in numbers[:-1]) + f" or {numbers[-1]}"
    question = f"Which is the {'largest' if largest else 'smallest'} number: {listed}?"
    return question, str(answer), [str(n) for n in numbers if n != answer]


KINDS: dict[str, Callable[[random.Random], tuple[str, str, list[str]]]] = {
    "addition": addition,
    "subtraction": subtraction,
    "multiplication": multiplication,
    "conversion": conversion,
    "ordering": ordering,
}


def make_items(seed: int = SEED) -> list[dict]:
    """The questions, kinds interleaved so that any first N items mix all of them; choices shuffled."""
    rng = random.Random(seed)
    items = []
    for index in range(ITEMS_PER_KIND * len(KINDS)):
        kind = list(KINDS)[index % len(KINDS)]
        question, answer, wrong = KINDS[kind](rng)
        choices = [answer, *wrong]
        rng.shuffle(choices)
        items.append(
            {
                "id": f"{kind}-{index // len(KINDS):02d}",
                "kind": kind,
                "question": question,
                "choices": choices,
                "answer": choices.index(answer),
            }
        )
    return items


def write_items(items: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for item in items:
            handle.write(json.dumps(item) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_FILE, help=f"where to write (default: {DATA_FILE.name})")
    args = parser.parse_args(argv)
    write_items(make_items(), args.out)


if __name__ == "__main__":
    main()
