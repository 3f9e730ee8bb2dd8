from decimal import Decimal

import pytest

from orchestration.catalog.expressions import (
    ExpressionError,
    evaluate,
    parse_expression,
    properties_of,
)


@pytest.mark.parametrize(
    ("text", "props", "expected"),
    [
        ("input_tokens + output_tokens", {"input_tokens": 1200, "output_tokens": 310}, "1510"),
        ("(cpu_ms + io_ms) * cores / 1000", {"cpu_ms": 1500, "io_ms": 500, "cores": 2}, "4"),
        ("duration_ms * gpu_count / 3600000", {"duration_ms": 1800000, "gpu_count": 4}, "2"),
        ("a - b - c", {"a": 10, "b": 3, "c": 2}, "5"),
        ("-a * 2.5", {"a": 2}, "-5.0"),
        ("a / b / c", {"a": 12, "b": 3, "c": 2}, "2"),
    ],
)
def test_evaluate(text, props, expected):
    tree = parse_expression(text)
    assert evaluate(tree, {k: Decimal(v) for k, v in props.items()}) == Decimal(expected)


@pytest.mark.parametrize(
    "text", ["", "a +", "(a", "a b", "a; drop table x", "a ** 2", "'x'", "a.b", "1e5"]
)
def test_rejects(text):
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_properties_in_order():
    assert properties_of(parse_expression("b * (a + b) - c")) == ["b", "a", "c"]
