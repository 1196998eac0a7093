"""Rule-based ticket pricing, kept free of Tryton imports.

The back office stores price rules as records; this module turns a base price
and the rules that match a sale context into a price and an explanation of
every step, so that marketing can see why a price is what it is and the lean
booking path can price without the ORM.
"""
from dataclasses import dataclass, field
from datetime import date, time
from decimal import ROUND_HALF_UP, Decimal

METHODS = ('fixed', 'percentage', 'amount')
DAY_KINDS = ('any', 'holiday', 'regular')


@dataclass(frozen=True)
class SaleContext:
    "Where and when a ticket is sold."
    ticket_type: int
    day: date
    holiday: bool = False
    slot_start: time | None = None
    channel: int | None = None
    # Persons booked ÷ capacity of the slot, 0..1; None when unknown.
    fill_ratio: Decimal | None = None


@dataclass(frozen=True)
class Rule:
    "A price rule as data; empty sets and None mean 'any'."
    id: int
    name: str
    priority: int
    method: str
    value: Decimal
    final: bool = False
    ticket_types: frozenset = frozenset()
    date_from: date | None = None
    date_to: date | None = None
    weekdays: frozenset = frozenset()  # 0 = Monday, as date.weekday()
    day_kind: str = 'any'
    time_from: time | None = None
    time_to: time | None = None
    channels: frozenset = frozenset()
    min_fill_ratio: Decimal | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown price method {self.method!r}")
        if self.day_kind not in DAY_KINDS:
            raise ValueError(f"unknown day kind {self.day_kind!r}")

    def matches(self, ctx):
        if self.ticket_types and ctx.ticket_type not in self.ticket_types:
            return False
        if self.date_from and ctx.day < self.date_from:
            return False
        if self.date_to and ctx.day > self.date_to:
            return False
        if self.weekdays and ctx.day.weekday() not in self.weekdays:
            return False
        if self.day_kind == 'holiday' and not ctx.holiday:
            return False
        if self.day_kind == 'regular' and ctx.holiday:
            return False
        if self.time_from or self.time_to:
            if ctx.slot_start is None:
                return False
            if self.time_from and ctx.slot_start < self.time_from:
                return False
            if self.time_to and ctx.slot_start >= self.time_to:
                return False
        if self.channels and ctx.channel not in self.channels:
            return False
        if self.min_fill_ratio is not None:
            if ctx.fill_ratio is None or ctx.fill_ratio < self.min_fill_ratio:
                return False
        return True

    def apply(self, price):
        if self.method == 'fixed':
            return self.value
        if self.method == 'percentage':
            return price * (Decimal(100) + self.value) / Decimal(100)
        return price + self.value

    def describe(self):
        if self.method == 'fixed':
            return f"= {self.value}"
        sign = '+' if self.value >= 0 else ''
        if self.method == 'percentage':
            return f"{sign}{self.value} %"
        return f"{sign}{self.value}"


@dataclass(frozen=True)
class Step:
    rule: Rule
    before: Decimal
    after: Decimal


@dataclass(frozen=True)
class Quote:
    base: Decimal
    price: Decimal
    steps: tuple = field(default_factory=tuple)

    def explanation(self):
        "One line per step, the words a price check shows."
        lines = [f"Base price: {self.base}"]
        for step in self.steps:
            stop = " (final)" if step.rule.final else ""
            lines.append(
                f"[{step.rule.priority}] {step.rule.name}: "
                f"{step.rule.describe()} → {step.after}{stop}")
        lines.append(f"Price: {self.price}")
        return "\n".join(lines)


def quantize(amount, digits=2):
    return amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def compute_price(base, rules, ctx, digits=2):
    """Apply the matching rules by ascending priority (then id).

    Each step is rounded to the currency's digits so that the explanation
    adds up exactly; a rule marked final stops the rules after it; a price
    never goes below zero.
    """
    if not isinstance(base, Decimal):
        raise TypeError("base price must be a Decimal")
    price = quantize(base, digits)
    steps = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if not rule.matches(ctx):
            continue
        after = max(quantize(rule.apply(price), digits), Decimal(0))
        steps.append(Step(rule, price, after))
        price = after
        if rule.final:
            break
    return Quote(quantize(base, digits), price, tuple(steps))
