"""The two SQL dialects the meters' compiled SQL is written in: DuckDB's and Spark SQL's.

metering.py compiles each meter and exclusion once per warehouse engine; what differs
between the engines is here, behind one small interface. Both dialects must give the same
answer for every event, to the byte where the answer reaches an invoice (a group key's text
form): tests/spark/test_metering_dialects.py evaluates both on the same events.

Where Spark needs more than a different function name:
- a property is read from `from_json(properties, 'map<string,string>')` by its exact name (a
  JSON path would need the name escaped for Spark's path syntax, which has no escape for all
  characters); a repeated key gives its first value, as DuckDB's JSON functions do;
- Spark (its JSON parser, on Java 17) writes a JSON float as Java does (`1.0E7`, `1.234E-4`)
  where DuckDB writes JavaScript's form (`10000000.0`, `0.0001234`, `1e21`): the text form of
  a number is rewritten into DuckDB's, only for values that are not JSON strings;
- Spark's string literals read backslash escapes, so a backslash is doubled in a literal;
- Spark has no TRY(...) around an expression: each operation that can overflow is its own
  try_ function, and exact division (mb_div in DuckDB, a macro over hugeint) is the models'
  own Spark form of it (spark__mb_div in dbt_project/macros/dialect.sql);
- Spark's unary minus and abs round a decimal to 34 digits: negation is a subtraction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jinja2

from orchestration.sql import quote_json_path, quote_literal
from orchestration.workspace import DBT_PROJECT_DIR

# SPEC 2.3: a numeric string is a finite decimal; signs, a fraction and an exponent are fine,
# NaN / Infinity are not. Surrounding spaces are tolerated (CSV cells).
NUMBER_PATTERN = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
DECIMAL = "DECIMAL(38, 12)"


class DuckDBSql:
    """DuckDB: the embedded warehouse's dialect (the SQL meterbook has always compiled)."""

    def literal(self, value: str) -> str:
        return quote_literal(value)

    def property_text(self, name: str) -> str:
        """Strings as is, numbers and booleans as JSON writes them, NULL when missing."""
        return f"json_extract_string(properties, {quote_json_path(name)})"

    def numeric_from_text(self, text_sql: str) -> str:
        return (
            f"CASE WHEN regexp_full_match({text_sql}, {quote_literal(NUMBER_PATTERN)}) "
            f"THEN TRY_CAST(trim({text_sql}) AS {DECIMAL}) END"
        )

    def property_number(self, name: str) -> str:
        """The document is parsed once (json_extract); the value is then told apart by its
        first character, which costs nothing next to another parse of the whole object."""
        value = f"json_extract(properties, {quote_json_path(name)})"
        text = f"({value} ->> '$')"
        return (
            f"(CASE WHEN starts_with({value}, '\"') THEN {self.numeric_from_text(text)} "
            f"WHEN ascii({value}) = 45 OR ascii({value}) BETWEEN 48 AND 57 "  # '-' or a digit
            f"THEN TRY_CAST(CAST({value} AS VARCHAR) AS {DECIMAL}) END)"
        )

    def arithmetic(self, op: str, left: str, right: str) -> str:
        if op == "*":
            # a product widens the decimal scale; bring it back so chains cannot overflow
            return f"CAST(({left} * {right}) AS {DECIMAL})"
        return f"({left} {op} {right})"

    def negate(self, operand: str) -> str:
        return f"(-{operand})"

    def divide(self, left: str, right: str) -> str:
        # a zero divisor gives NULL (the event is then bad_property), not a failed run
        return f"mb_div({left}, nullif({right}, 0))"

    def try_(self, sql: str) -> str:
        """An overflow anywhere in `sql` gives NULL instead of failing the query."""
        return f"TRY({sql})"

    def as_text(self, sql: str) -> str:
        return f"CAST({sql} AS VARCHAR)"

    def json_object(self, pairs: list[tuple[str, str]]) -> str:
        """A JSON object text of (name, text SQL) pairs, in order, nulls written as null."""
        if not pairs:
            return "CAST(NULL AS JSON)"
        return "json_object(" + ", ".join(f"{quote_literal(n)}, {v}" for n, v in pairs) + ")"


# Java's text of a JSON float: digits, a point, digits, maybe an exponent (1.0E7, 0.001)
_JAVA_FLOAT = r"^(-?)([0-9]+)\.([0-9]+)(E(-?[0-9]+))?$"


@functools.cache
def _models_macros():
    """The dbt project's dialect macros, rendered with plain Jinja (spark__mb_div needs
    nothing of dbt's)."""
    text = (DBT_PROJECT_DIR / "macros" / "dialect.sql").read_text(encoding="utf-8")
    return jinja2.Environment().from_string(text).module


class SparkSql:
    """Spark SQL 4 with `spark.sql.decimalOperations.allowPrecisionLoss=false` (without it,
    a DECIMAL(38, 12) product keeps 6 decimals) and the session time zone UTC."""

    def __init__(self) -> None:
        self._lambda = 0

    def literal(self, value: str) -> str:
        if "\x00" in value:
            raise ValueError("a NUL character cannot appear in a SQL literal")
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def _raw(self, name: str) -> str:
        return f"from_json(properties, 'map<string,string>')[{self.literal(name)}]"

    def _bind(self, value_sql: str, body: Callable[[str], str]) -> str:
        """body(name) with `name` standing for `value_sql`, evaluated once (a lambda's
        argument): expressions nest, and an operand written out at each use would grow
        the SQL exponentially with the nesting."""
        self._lambda += 1
        name = f"mb_{self._lambda}"
        return f"transform(array({value_sql}), {name} -> {body(name)})[0]"

    def property_text(self, name: str) -> str:
        raw = self._raw(name)
        value = f"from_json(properties, 'map<string,variant>')[{self.literal(name)}]"
        return (
            f"(CASE WHEN {raw} RLIKE {self.literal(_JAVA_FLOAT)} "
            f"AND schema_of_variant({value}) <> 'STRING' AND cast({raw} as double) <> 0 "
            f"THEN {self._bind(raw, self._javascript_number)} ELSE {raw} END)"
        )

    def _javascript_number(self, java: str) -> str:
        """A JSON float as DuckDB (yyjson) writes it, from Java's text of the same double:
        the shortest digits that give the double back (Java 17's are longer for about 0.4%
        of doubles), laid out as JavaScript does."""
        pattern = self.literal(_JAVA_FLOAT)
        group = lambda n: f"regexp_extract({java}, {pattern}, {n})"  # noqa: E731
        written = f"concat({group(2)}, {group(3)})"
        leading_zeros = f"(length({written}) - length(regexp_replace({written}, '^0+', '')))"
        parts = (
            f"named_struct('s', {group(1)}, "
            f"'d', regexp_replace(regexp_replace({written}, '^0+', ''), '0+$', ''), "
            f"'x', coalesce(cast(nullif({group(5)}, '') as int), 0) + length({group(2)}) - 1 "
            f"- {leading_zeros}, 'v', cast({java} as double))"
        )
        return self._bind(parts, lambda p: self._bind(self._shortest(p), self._layout))

    @staticmethod
    def _shortest(p: str) -> str:
        """(s, d, x) of the fewest digits of `p.d`, rounded half-up, that parse back to the
        double `p.v`: sign, digits (the first one not zero) and the first digit's exponent."""
        power = f"cast(concat('1', repeat('0', length({p}.d) - k)) as bigint)"
        rounded = (
            f"cast({p}.d as bigint) div {power} + "
            f"CASE WHEN 2 * (cast({p}.d as bigint) % {power}) >= {power} THEN 1 ELSE 0 END"
        )
        candidate = (
            f"named_struct('s', {p}.s, 'd', regexp_replace(cast({rounded} as string), '0+$', ''), "
            f"'x', {p}.x + CASE WHEN length(cast({rounded} as string)) > k THEN 1 ELSE 0 END)"
        )
        parses_back = (
            "cast(concat(c.s, substr(c.d, 1, 1), '.', substr(c.d, 2), '0E', c.x) as double) "
            f"= {p}.v"
        )
        return (
            f"try_element_at(filter(transform(sequence(1, length({p}.d)), k -> {candidate}), "
            f"c -> {parses_back}), 1)"
        )

    @staticmethod
    def _layout(p: str) -> str:
        """JavaScript's layout of sign p.s, digits p.d, exponent p.x: positional for
        exponents -6..20 (a whole number keeps '.0'), else 1.234e-7 / 1e21."""
        d, x = f"{p}.d", f"{p}.x"
        return (
            f"concat({p}.s, CASE "
            f"WHEN {x} >= 21 OR {x} <= -7 THEN concat(substr({d}, 1, 1), "
            f"CASE WHEN length({d}) > 1 THEN concat('.', substr({d}, 2)) ELSE '' END, "
            f"'e', cast({x} as string)) "
            f"WHEN {x} < 0 THEN concat('0.', repeat('0', -{x} - 1), {d}) "
            f"WHEN length({d}) <= {x} + 1 THEN concat(rpad({d}, {x} + 1, '0'), '.0') "
            f"ELSE concat(substr({d}, 1, {x} + 1), '.', substr({d}, {x} + 2)) END)"
        )

    def numeric_from_text(self, text_sql: str) -> str:
        return (
            f"CASE WHEN {text_sql} RLIKE {self.literal(NUMBER_PATTERN)} "
            f"THEN try_cast(trim({text_sql}) AS {DECIMAL}) END"
        )

    def property_number(self, name: str) -> str:
        """The number of the property's text form: a JSON number's text and a numeric
        string's are both numeric by the pattern, nothing else is (true, null, objects).
        DuckDB reads a JSON float's number from its text too (58269338342891970.0 where the
        double's own value is ...968): so Spark reads it from the same text."""
        return f"({self._bind(self.property_text(name), self.numeric_from_text)})"

    def arithmetic(self, op: str, left: str, right: str) -> str:
        if op == "*":
            return f"try_cast(try_multiply({left}, {right}) AS {DECIMAL})"
        return f"try_{'add' if op == '+' else 'subtract'}({left}, {right})"

    def negate(self, operand: str) -> str:
        # Spark's unary minus (and abs) round a decimal to 34 digits (Scala's default
        # MathContext): -x of 10^22 + 0.058823529412 loses its last two; a subtraction does not
        return f"(0 - {operand})"

    def divide(self, left: str, right: str) -> str:
        """DuckDB's mb_div, exactly: the models' Spark form of it (spark__mb_div in
        dbt_project/macros/dialect.sql, where each step is explained), one source for both;
        its lambdas tagged apart from those of the divisions it nests in."""
        self._lambda += 1
        return str(_models_macros().spark__mb_div(left, right, str(self._lambda))).strip()

    def try_(self, sql: str) -> str:
        return sql  # every operation that can overflow is already a try_ function

    def as_text(self, sql: str) -> str:
        return f"CAST({sql} AS STRING)"

    def json_object(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return "CAST(NULL AS STRING)"
        fields = ", ".join(f"{self.literal(n)}, {v}" for n, v in pairs)
        return f"to_json(named_struct({fields}), map('ignoreNullFields', 'false'))"


DUCKDB = DuckDBSql()


def dialect(name: str) -> DuckDBSql | SparkSql:
    """The dialect of a warehouse engine: 'duckdb' or 'spark'."""
    if name == "duckdb":
        return DUCKDB
    if name == "spark":
        return SparkSql()
    raise ValueError(f"no SQL dialect for warehouse engine {name!r} (duckdb or spark)")
