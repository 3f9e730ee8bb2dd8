"""Meter expressions: a small, safe parser of our own (SPEC 3.1).

Grammar: property names, decimal literals, `+ - * /`, unary minus and parentheses.

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | NAME | '(' expr ')' | '-' factor

Nothing from the catalog reaches SQL as text: `to_sql` renders the tree, asking the caller
how to read a property (a quoted JSON path or column) and how to divide exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))"
)


class ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class Number:
    value: Decimal


@dataclass(frozen=True)
class Prop:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Expression


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expression
    right: Expression


Expression = Number | Prop | Neg | BinOp


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(
                f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos + 1}"
            )
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self.pos += 1
        return token

    def expr(self) -> Expression:
        node = self.term()
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "op":
            self.take()
            node = BinOp(tok[1], node, self.term())
        return node

    def term(self) -> Expression:
        node = self.factor()
        while (tok := self.peek()) and tok[1] in "*/" and tok[0] == "op":
            self.take()
            node = BinOp(tok[1], node, self.factor())
        return node

    def factor(self) -> Expression:
        kind, text = self.take()
        if kind == "num":
            return Number(Decimal(text))
        if kind == "name":
            return Prop(text)
        if text == "-":
            return Neg(self.factor())
        if text == "(":
            node = self.expr()
            if self.take()[1] != ")":
                raise ExpressionError("a '(' is not closed")
            return node
        raise ExpressionError(f"unexpected {text!r}")


def parse_expression(text: str) -> Expression:
    if not text or not text.strip():
        raise ExpressionError("the expression is empty")
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r} after a complete expression")
    return node


def properties_of(node: Expression) -> list[str]:
    """Property names the expression reads, in first-seen order."""
    if isinstance(node, Prop):
        return [node.name]
    if isinstance(node, Neg):
        return properties_of(node.operand)
    if isinstance(node, BinOp):
        seen = properties_of(node.left)
        return seen + [p for p in properties_of(node.right) if p not in seen]
    return []


def literals_of(node: Expression) -> list[Decimal]:
    """The decimal literals of the expression, in order."""
    if isinstance(node, Number):
        return [node.value]
    if isinstance(node, Neg):
        return literals_of(node.operand)
    if isinstance(node, BinOp):
        return literals_of(node.left) + literals_of(node.right)
    return []


def is_single_property(node: Expression) -> bool:
    return isinstance(node, Prop)


class SqlOperations(Protocol):
    """How a warehouse engine's SQL reads a property and stays exact (catalog/tables/dialects)."""

    def property_number(self, name: str) -> str: ...
    def divide(self, left: str, right: str) -> str: ...
    def arithmetic(self, op: str, left: str, right: str) -> str: ...
    def negate(self, operand: str) -> str: ...


def to_sql(node: Expression, sql: SqlOperations) -> str:
    """Render the tree as SQL. Literals are validated Decimals; names, operators and
    negation go through the dialect `sql`."""
    if isinstance(node, Number):
        return f"CAST('{node.value}' AS DECIMAL(38, 12))"
    if isinstance(node, Prop):
        return sql.property_number(node.name)
    if isinstance(node, Neg):
        return sql.negate(to_sql(node.operand, sql))
    left, right = to_sql(node.left, sql), to_sql(node.right, sql)
    if node.op == "/":
        return sql.divide(left, right)
    return sql.arithmetic(node.op, left, right)


def evaluate(node: Expression, props: dict[str, Decimal]) -> Decimal:
    """Decimal evaluation in Python, for tests and the explanation of a single event."""
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Prop):
        return props[node.name]
    if isinstance(node, Neg):
        return -evaluate(node.operand, props)
    left, right = evaluate(node.left, props), evaluate(node.right, props)
    return (
        {"+": left + right, "-": left - right, "*": left * right}.get(node.op)
        if node.op != "/"
        else left / right
    )
