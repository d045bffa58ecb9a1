"""The part of PromQL that judges an alert rule from the series exported right now.

The status page and `vigil once` show the conditions the shipped rules alert on, and
evaluate each with the rule's own expression (agent.model.Condition), so that the page
and Prometheus cannot disagree on a threshold. Only instant arithmetic is here:
selectors with matchers, numbers, `+ - * /`, comparisons, `and`, `or`, `unless`, `on (...)`
matching, `time()`, `clamp_min`, `label_replace` and `max/min/sum by (...)`, with
Prometheus' rules for which labels a result keeps; and `last_over_time(x[d])`, the one
range a series' newest sample answers: it is that sample while it is at most d old, even
after the series is gone (an instant selector no longer sees a gone series: Prometheus
marks it stale at the next scrape). A rule that needs more of the past (`rate`,
`predict_linear`, `offset`...) raises Unsupported: only Prometheus can judge it.
Both ends of a range and of the lookback are included, as in Prometheus 2.
tests/test_conditions.py checks every result against Prometheus' own on the rules'
promtool fixtures.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from agent.units import parse_duration

NAME = "__name__"
_TOKEN = re.compile(r"""\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
                      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
                      |(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
                      |(?P<op>==|!=|>=|<=|=~|!~|[-+*/<>(){}\[\],=]))""", re.X)
_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": lambda a, b: _divide(a, b)}
_COMPARISON = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge,
               "<=": operator.le}
_LEVELS = (("or",), ("and", "unless"), tuple(_COMPARISON), ("+", "-"), ("*", "/"))  # loosest binding first
_AGGREGATIONS = {"max": max, "min": min, "sum": sum}


class Unsupported(ValueError):
    """The expression needs what only Prometheus has (past samples, the scrape itself)."""


@dataclass(frozen=True, slots=True)
class Point:
    """One series of an instant vector: its labels (with __name__ while it has one) and value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Newest:
    """A series' newest sample: its value, when it was taken, and whether an instant selector still finds it."""

    labels: Mapping[str, str]
    value: float
    at: float
    current: bool  # exported now; false once the series is gone


Series = Iterable[tuple[str, Mapping[str, str], float]]  # (metric name, labels, value) exported now
Gone = Iterable[tuple[str, Mapping[str, str], float, float]]  # (name, labels, value, when it left the export)
Index = Mapping[str, list[Newest]]  # series by metric name: a selector reads its own
Value = float | list[Point]
Node = Callable[[Index, float], Value]  # (every series, time()) -> a scalar or a vector


def index(series: Series, now: float, gone: Gone = ()) -> Index:
    """The series exported at `now` and those gone from the export (a range still reads them), by metric name."""
    found: dict[str, list[Newest]] = {}
    for name, labels, value in series:
        found.setdefault(name, []).append(Newest(labels, value, now, True))
    for name, labels, value, at in gone:
        found.setdefault(name, []).append(Newest(labels, value, at, False))
    return found


def evaluate(expr: str, series: Index, now: float) -> list[Point]:
    """The instant vector `expr` gives over `series` at time `now` (seconds since the epoch)."""
    result = parse(expr)(series, now)
    if isinstance(result, float):
        raise Unsupported(f"{expr!r} is a number, not a condition on series")
    return result


@lru_cache(maxsize=512)
def parse(expr: str) -> Node:
    """The expression as a function; Unsupported names what only Prometheus can evaluate."""
    parser = _Parser(expr)
    node = parser.binary(0)
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r} in {expr!r}")
    return node


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.words: list[tuple[str, str]] = []
        position = 0
        while position < len(expr.rstrip()):
            match = _TOKEN.match(expr, position)
            if match is None:
                raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
            self.words.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
            position = match.end()
        self.at = 0

    def peek(self) -> str | None:
        return self.words[self.at][1] if self.at < len(self.words) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected or 'more'} in {self.expr!r}, found {token!r}")
        self.at += 1
        return token

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.primary()
        node = self.binary(level + 1)
        while self.peek() in _LEVELS[level]:
            op = self.take()
            if self.peek() == "bool":
                raise Unsupported("`bool` comparisons are not conditions")
            on = self.labels() if self.peek() == "on" else None
            if self.peek() in ("ignoring", "group_left", "group_right"):
                raise Unsupported(f"`{self.peek()}` matching")
            node = _binary(op, on, node, self.binary(level + 1))
        return node

    def labels(self) -> tuple[str, ...]:
        """`on (a, b)` / `by (a, b)`: the keyword, then the list."""
        self.take()
        self.take("(")
        names = []
        while self.peek() != ")":
            names.append(self.take())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return tuple(names)

    def arguments(self) -> list[Node]:
        self.take("(")
        args = []
        while self.peek() != ")":
            args.append(self.binary(0))
            if self.peek() == ",":
                self.take()
        self.take(")")
        return args

    def primary(self) -> Node:
        kind, word = self.words[self.at] if self.at < len(self.words) else ("", "")
        if word == "(":
            self.take()
            node = self.binary(0)
            self.take(")")
            return node
        self.take()
        if kind == "number":
            return _constant(float(word))
        if kind == "string":
            text = _unquote(word)
            return lambda series, now: text  # type: ignore[return-value] # only an argument of a function
        if kind != "name":
            raise ValueError(f"unexpected {word!r} in {self.expr!r}")
        if word == "last_over_time":
            return self.last_over_time()
        if word in _AGGREGATIONS:
            by = self.labels() if self.peek() == "by" else None
            (inner,) = self.arguments()
            by = by if by is not None else self.labels() if self.peek() == "by" else ()
            return _aggregate(_AGGREGATIONS[word], by, inner)
        if self.peek() == "(":
            return _function(word, self.arguments())
        matchers = self.matchers() if self.peek() == "{" else []
        if self.peek() == "[" or self.peek() == "offset":
            raise Unsupported(f"{word} needs past samples (a range or an offset)")
        return _selector(word, matchers)

    def last_over_time(self) -> Node:
        """`last_over_time(name{...}[d])`: the one range function a series' newest sample answers."""
        self.take("(")
        name = self.take()
        matchers = self.matchers() if self.peek() == "{" else []
        self.take("[")
        span = ""
        while self.peek() not in ("]", None):
            span += self.take()
        self.take("]")
        if self.peek() != ")":
            raise Unsupported(f"last_over_time of {name} with {self.peek()!r} (an offset or a subquery)")
        self.take(")")
        return _selector(name, matchers, parse_duration(span))

    def matchers(self) -> list[Callable[[Mapping[str, str]], bool]]:
        self.take("{")
        found = []
        while self.peek() != "}":
            label, op, value = self.take(), self.take(), _unquote(self.take())
            found.append(_matcher(label, op, value))
            if self.peek() == ",":
                self.take()
        self.take("}")
        return found


def _unquote(token: str) -> str:
    if token[:1] not in "\"'":
        raise ValueError(f"expected a quoted string, found {token!r}")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _matcher(label: str, op: str, value: str) -> Callable[[Mapping[str, str]], bool]:
    """PromQL's matchers: a missing label is the empty string; regular expressions match whole values."""
    if op in ("=~", "!~"):
        pattern = re.compile(value)
        wanted = op == "=~"
        return lambda labels: bool(pattern.fullmatch(labels.get(label, ""))) == wanted
    if op not in ("=", "!="):
        raise ValueError(f"unknown matcher {op!r}")
    return lambda labels: (labels.get(label, "") == value) == (op == "=")


def _selector(name: str, matchers: list[Callable[[Mapping[str, str]], bool]], span: float | None = None) -> Node:
    """The series of that name the matchers accept, as a query sees them: a label with an empty value is none.

    Without a `span`, an instant selector: the series exported now. With one, `last_over_time`:
    every series whose newest sample is at most `span` seconds old, gone or not (it keeps the
    name, as in Prometheus, where the other `_over_time` functions drop it).
    """
    def run(series: Index, now: float) -> list[Point]:
        return [Point({NAME: name, **{k: v for k, v in seen.labels.items() if v != ""}}, seen.value)
                for seen in series.get(name, ())
                if (seen.current if span is None else now - span <= seen.at <= now)
                and all(m(seen.labels) for m in matchers)]

    return run


def _constant(value: float) -> Node:
    return lambda series, now: value


def _function(name: str, args: list[Node]) -> Node:
    if name == "time" and not args:
        return lambda series, now: now
    if name == "clamp_min" and len(args) == 2:
        vector, least = args
        return lambda series, now: [Point(_without_name(p.labels), max(p.value, least(series, now)))
                                    for p in vector(series, now)]
    if name == "label_replace" and len(args) == 5:
        return _label_replace(*args)
    raise Unsupported(f"{name}() is for Prometheus to evaluate")


def _label_replace(vector: Node, *texts: Node) -> Node:
    def run(series: Index, now: float) -> list[Point]:
        target, replacement, source, pattern = (str(text(series, now)) for text in texts)
        out = []
        for point in vector(series, now):
            match = re.fullmatch(pattern, point.labels.get(source, ""))
            labels = dict(point.labels)
            if match is not None:
                value = match.expand(re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", replacement))
                if value:
                    labels[target] = value
                else:
                    labels.pop(target, None)
            out.append(Point(labels, point.value))
        return out

    return run


def _aggregate(how: Callable[[Iterable[float]], float], by: tuple[str, ...], inner: Node) -> Node:
    def run(series: Index, now: float) -> list[Point]:
        groups: dict[tuple[str, ...], list[float]] = {}
        for point in _vector(inner(series, now)):
            groups.setdefault(tuple(point.labels.get(label, "") for label in by), []).append(point.value)
        return [Point({label: value for label, value in zip(by, key, strict=True) if value}, how(values))
                for key, values in groups.items()]

    return run


def _binary(op: str, on: tuple[str, ...] | None, lhs: Node, rhs: Node) -> Node:
    def key(point: Point) -> tuple:
        if on is not None:
            return tuple(point.labels.get(label, "") for label in on)
        return tuple(sorted(_without_name(point.labels).items()))

    def run(series: Index, now: float) -> Value:
        left, right = lhs(series, now), rhs(series, now)
        if op in ("and", "or", "unless"):
            present = {key(point) for point in _vector(left if op == "or" else right)}
            if op != "or":  # `and` keeps the left's series matched on the right, `unless` those not
                return [point for point in _vector(left) if (key(point) in present) == (op == "and")]
            return [*_vector(left), *(point for point in _vector(right) if key(point) not in present)]
        if isinstance(left, float) and isinstance(right, float):
            if op in _COMPARISON:
                raise Unsupported("a comparison of two numbers needs `bool`")
            return _ARITHMETIC[op](left, right)
        if isinstance(left, float) or isinstance(right, float):
            return _with_scalar(op, left, right)
        matches = {key(point): point for point in right}
        out = []
        for point in left:
            other = matches.get(key(point))
            if other is None:
                continue
            labels = _without_name(point.labels) if op in _ARITHMETIC else dict(point.labels)
            if on is not None:  # one-to-one matching `on` keeps only those labels
                labels = {label: labels[label] for label in on if label in labels}
            if op in _ARITHMETIC:
                out.append(Point(labels, _ARITHMETIC[op](point.value, other.value)))
            elif _COMPARISON[op](point.value, other.value):
                out.append(Point(labels, point.value))
        return out

    return run


def _with_scalar(op: str, left: Value, right: Value) -> list[Point]:
    """A vector against a number: arithmetic drops the name, a comparison filters and keeps the vector's value."""
    vector, swapped = (right, True) if isinstance(left, float) else (left, False)
    number = left if swapped else right
    out = []
    for point in _vector(vector):
        a, b = (number, point.value) if swapped else (point.value, number)
        if op in _ARITHMETIC:
            out.append(Point(_without_name(point.labels), _ARITHMETIC[op](a, b)))
        elif _COMPARISON[op](a, b):
            out.append(point)
    return out


def _vector(value: Value) -> list[Point]:
    if isinstance(value, float):
        raise Unsupported("`and`, `or` and `unless` join vectors, not numbers")
    return value


def _without_name(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != NAME}


def _divide(a: float, b: float) -> float:
    if b:
        return a / b
    return float("nan") if a == 0 else float("inf") if a > 0 else float("-inf")
