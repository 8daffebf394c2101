"""Money: integer micro-dollars inside, US dollars only at the edges, converted here alone.

Costs are summed in integers (rounded up once, see accounting/pricing.py); these turn them into
dollars for people, JSON and metrics, and a limit in dollars into micro-dollars.
"""

from __future__ import annotations

MICROS_PER_USD = 1_000_000


def usd(micros: int) -> float:
    """Micro-dollars as US dollars."""
    return micros / MICROS_PER_USD


def micros(dollars: float) -> int:
    """US dollars as whole micro-dollars, rounded down (a limit never grows by rounding)."""
    return int(dollars * MICROS_PER_USD)


def micros_rounded(dollars: float) -> int:
    """US dollars as the nearest whole micro-dollars (a threshold a person typed)."""
    return round(dollars * MICROS_PER_USD)


#: Past this an amount is named by its bound, not its digits: a hostile `n: 1e300` made a
#: budget refusal quote a 300-digit sum.
_BEYOND = 10**12 * MICROS_PER_USD


def usd_text(amount: int) -> str:
    """An amount for people: cents from a dollar up ($5.00), else every micro-dollar that
    matters ($0.002, $0.000011): a refusal must never read "$0.00 remains" for $0.000011."""
    if abs(amount) >= _BEYOND:
        return ("-" if amount < 0 else "") + "over $1,000,000,000,000"
    if abs(amount) >= MICROS_PER_USD or amount == 0:
        return f"${usd(amount):,.2f}"
    digits = f"{abs(usd(amount)):.6f}".rstrip("0")
    if len(digits.split(".")[1]) < 2:
        digits = f"{abs(usd(amount)):.2f}"
    return ("-$" if amount < 0 else "$") + digits
