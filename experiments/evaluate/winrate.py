"""Pairwise win rates, as FastChat's ``show_result.py`` computes them; pure arithmetic.

Each comparison of the model with a baseline is judged twice, with the model as assistant A (the first order)
and as assistant B (the second order). A verdict ("A", "B", or "C" for a tie) is first mapped back to who won
(`order_winner`); the two orders then combine as FastChat does (`combine_orders`): the same winner in both
orders wins, anything else (a tie in either order, or the orders disagreeing) is a tie. A comparison with an
unparsed verdict in either order is left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

MODEL, BASELINE, TIE = "model", "baseline", "tie"
SCORE = {MODEL: 1.0, TIE: 0.5, BASELINE: 0.0}


def order_winner(verdict: str | None, *, model_is_a: bool) -> str | None:
    """``model``, ``baseline`` or ``tie`` for a verdict ``A`` / ``B`` / ``C`` (None stays None)."""
    if verdict is None:
        return None
    if verdict == "C":
        return TIE
    if verdict not in ("A", "B"):
        raise ValueError(f"a pairwise verdict is A, B or C, got {verdict!r}")
    return MODEL if (verdict == "A") == model_is_a else BASELINE


def combine_orders(first: str | None, second: str | None) -> str | None:
    """The comparison's outcome from the winners of its two orders (None when either is unparsed)."""
    if first is None or second is None:
        return None
    return first if first == second else TIE


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, standard error)``: the sample standard deviation (ddof 1) over sqrt(n); NaN where undefined."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


@dataclass(frozen=True)
class WinRate:
    """Counts and rates of one model against a baseline.

    ``win_rate`` counts a tie as half a win, over the ``wins + ties + losses`` comparisons whose two orders
    both parsed; ``win_rate_se`` is its standard error (per-comparison scores 1, 0.5, 0). ``inconsistent``:
    the ties that come from the two orders disagreeing. ``win_rate_model_first`` / ``_model_second``: the
    same rate over each order's parsed verdicts alone; their gap measures the judge's position bias.
    """

    wins: int
    ties: int
    losses: int
    unparsed: int
    inconsistent: int
    win_rate: float
    win_rate_se: float
    win_rate_model_first: float
    win_rate_model_second: float

    def to_dict(self, prefix: str) -> dict[str, float | int]:
        """Flat ``{prefix}_wins``, ``{prefix}_win_rate``, ... for a results table."""
        return {f"{prefix}_{name}": value for name, value in asdict(self).items()}


def _rate(winners: Sequence[str]) -> float:
    return sum(SCORE[w] for w in winners) / len(winners) if winners else math.nan


def win_rate(pairs: Sequence[tuple[str | None, str | None]]) -> WinRate:
    """Win rate from ``(winner with the model as A, winner with the model as B)`` per comparison.

    Each winner is ``model``, ``baseline``, ``tie`` (see `order_winner`) or None when that order's verdict
    did not parse.
    """
    outcomes = [combine_orders(first, second) for first, second in pairs]
    parsed = [o for o in outcomes if o is not None]
    inconsistent = sum(1 for first, second in pairs if first is not None and second is not None and first != second)
    _, se = mean_se([SCORE[o] for o in parsed])
    return WinRate(
        wins=parsed.count(MODEL),
        ties=parsed.count(TIE),
        losses=parsed.count(BASELINE),
        unparsed=len(outcomes) - len(parsed),
        inconsistent=inconsistent,
        win_rate=_rate(parsed),
        win_rate_se=se,
        win_rate_model_first=_rate([first for first, _ in pairs if first is not None]),
        win_rate_model_second=_rate([second for _, second in pairs if second is not None]),
    )
