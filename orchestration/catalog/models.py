"""The catalog's shape (SPEC section 3) as pydantic models.

Field-level rules live here; rules that relate one entry to another (a charge on an unknown
meter, a plan in another currency than its customer) live in `validation.py`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import date, timedelta
from decimal import Decimal
from email.utils import getaddresses
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestration.catalog.currencies import is_currency

Code = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Money = Decimal
# The warehouse holds DECIMAL(38, 12) and mb_div needs magnitudes below 10^14: a value that
# does not fit is a catalog error, never a silently rounded price.
NonNegative = Annotated[Decimal, Field(ge=0, lt=Decimal("1e14"), decimal_places=12)]
Positive = Annotated[Decimal, Field(gt=0, lt=Decimal("1e14"), decimal_places=12)]
# What an event value or an expression literal is cast to: DECIMAL(38, 12), 26 digits
# before the point and 12 after.
COMPARABLE_LIMIT = Decimal("1e26")
# Far beyond any real term, and far from date overflow when added to a start date.
Days = Annotated[int, Field(ge=0, le=36_525)]
Priority = Annotated[int, Field(ge=0, le=1_000_000)]
GrantKind = Literal["promotional", "paid"]
GrantScope = Literal["usage", "all"]
Op = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"]
Aggregation = Literal["count", "sum", "count_unique", "max", "min", "latest", "time_weighted"]
ChargeModel = Literal["per_unit", "package", "graduated", "volume", "percentage"]
EVENT_FIELDS = ("customer_id", "event_name", "source")


def _currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an active ISO 4217 currency code (like USD, EUR, JPY)")
    return code


def _property_name(name: str) -> str:
    # a control character is almost always a paste or escaping accident, and no event
    # producer can be expected to match it; DuckDB cannot take NUL in a path at all
    if not name:
        raise ValueError("a property name cannot be empty")
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"property name {name!r} contains the control character {bad!r}")
    return name


def _tax_fraction(rate: Decimal) -> Decimal:
    # "5" for 5% would bill 500% tax: a rate above 1 is a percentage written by mistake
    if rate > 1:
        raise ValueError(
            f"tax_rate is a fraction between 0 and 1, like 0.05 for 5%; {rate} is more than 1"
            + (f" (for {rate}% write {rate / 100})" if rate <= 100 else "")
        )
    return rate


Currency = Annotated[str, AfterValidator(_currency)]
PropertyName = Annotated[str, AfterValidator(_property_name)]
TaxRate = Annotated[Decimal, Field(ge=0, decimal_places=12), AfterValidator(_tax_fraction)]


def strictly_increasing(name: str, values: list) -> list:
    """`values` as given, or a ValueError naming the first pair out of order."""
    for low, high in zip(values, values[1:], strict=False):
        if high <= low:
            raise ValueError(
                f"{name} must be listed in increasing order without repeats: {high} "
                f"comes after {low}"
            )
    return values


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Quantities are DECIMAL(38, 12): more decimals than 12 would show digits that do not exist.
DisplayDecimals = Annotated[int, Field(ge=0, le=12)]
AddressLines = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=8)
]


class Seller(Strict):
    """The issuer printed on invoice documents; everything but the name is optional."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    address: AddressLines = []
    tax_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    email: str | None = None
    phone: str | None = None


AccountName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]


class Accounts(Strict):
    """The general-ledger accounts the revenue journal posts to (SPEC 8), by role. Roles may
    share an account (one revenue account for usage and fees)."""

    receivable: AccountName = "accounts_receivable"
    unbilled: AccountName = "unbilled_revenue"
    deferred_revenue: AccountName = "deferred_revenue"
    revenue_usage: AccountName = "revenue_usage"
    revenue_fees: AccountName = "revenue_fees"
    breakage: AccountName = "breakage_revenue"
    tax_payable: AccountName = "tax_payable"


# Only the variable's name is in the catalog: the secret itself never is (nor in logs).
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]


class Webhook(Strict):
    """Where alert notifications are POSTed (SPEC 9), signed with the secret in `secret_env`."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2000)]
    secret_env: EnvName


# The files of catalog/templates/dunning/ that replace the shipped dunning templates (SPEC 11):
# any other file there is a catalog error (a misspelt name would silently change nothing).
DUNNING_TEMPLATES_DIR = ("templates", "dunning")
DUNNING_TEMPLATES = (
    "subject.txt",
    "reminder.txt",
    "reminder.html",
    "final_notice.txt",
    "final_notice.html",
)
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
# Far enough for any real dunning plan, and a day count that stays a small integer.
DunningDay = Annotated[int, Field(ge=1, le=3650)]


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a connection that never leaves this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# local@domain.tld: what the standard library's parser leaves of an address it understood
_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+")


def _mail_address(value: str) -> str:
    """One address, bare (`billing@example.com`) or with a name (`Billing <billing@...>`).

    Parsed by the standard library, as the sender will; a line break could smuggle a header
    into every message, so it is refused outright."""
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("a mail address cannot contain a line break")
    found = getaddresses([value])
    if len(found) != 1 or not _ADDRESS.fullmatch(found[0][1]):
        raise ValueError(f"{value!r} is not one mail address (like billing@example.com)")
    return value


MailAddress = Annotated[str, Field(max_length=320), AfterValidator(_mail_address)]


def mail_recipients(value: str) -> list[str]:
    """The bare addresses of a customer's `email` (one, or several separated by commas); empty
    when any part is not an address or a line break is in it."""
    if any(ch in value for ch in "\r\n"):
        return []
    found = [address for _, address in getaddresses([value])]
    if not found or not all(_ADDRESS.fullmatch(address) for address in found):
        return []
    return found


def _refuse_password(data: object) -> object:
    # "extra inputs are not permitted" would not say where the password goes instead
    if isinstance(data, dict) and "password" in data:
        raise ValueError(
            "the password is never written in the catalog: put it in an environment "
            "variable and name that variable in password_env"
        )
    return data


class Smtp(Strict):
    """The mail server that sends dunning reminders (SPEC 11). Only the name of the variable
    holding the password is in the catalog: the password itself is read when mail is sent and
    is never stored, logged or shown."""

    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\[\]-]+$", max_length=253)]
    # None: the usual port of `security` (587 starttls, 465 ssl, 25 none)
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # starttls: plain connection upgraded to TLS before anything is sent (refused if the
    # server does not offer it); ssl: TLS from the first byte; none: loopback only
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: Annotated[str, Field(min_length=1, max_length=320)] | None = None
    password_env: EnvName | None = None
    timeout_seconds: Annotated[Decimal, Field(gt=0, le=600)] = Decimal(30)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: object) -> object:
        return _refuse_password(data)

    @field_validator("security")
    @classmethod
    def _clear_text_stays_here(cls, security: str, info: ValidationInfo) -> str:
        host = info.data.get("host")
        if security == "none" and host is not None and not is_loopback_host(host):
            # reminders name customers and what they owe (and a login would send the
            # password): in clear text only to this machine, as for settings.webhook
            raise ValueError(
                f"security: none sends mail in clear text; allowed only to this machine "
                f"(localhost, 127.0.0.1, ::1), not {host!r}: use starttls or ssl"
            )
        return security

    @model_validator(mode="after")
    def _login(self) -> Smtp:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("give both username and password_env to log in, or neither")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]


class Dunning(Strict):
    """Reminders for overdue invoices (SPEC 11): one on each of `reminder_days` after the due
    date and a final notice after `final_notice_days`, for open invoices owing at least
    `min_amount` (in the invoice's own currency), sent from `from`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    reminder_days: Annotated[list[DunningDay], Field(max_length=50)] = [1, 7, 14]
    # checked against reminder_days when left at its default too
    final_notice_days: Annotated[DunningDay | None, Field(validate_default=True)] = 30
    min_amount: NonNegative = Decimal("1.00")
    from_address: MailAddress = Field(alias="from")
    reply_to: MailAddress | None = None

    @field_validator("reminder_days")
    @classmethod
    def _ascending(cls, days: list[int]) -> list[int]:
        return strictly_increasing("reminder_days", days)

    @field_validator("final_notice_days")
    @classmethod
    def _after_reminders(cls, days: int | None, info: ValidationInfo) -> int | None:
        reminders = info.data.get("reminder_days") or [0]
        if days is not None and days <= reminders[-1]:
            # the final notice says no reminder follows: it must come after the last one
            raise ValueError(
                f"final_notice_days ({days}) must be after the last of reminder_days "
                f"({reminders[-1]})"
            )
        return days

    @model_validator(mode="after")
    def _steps(self) -> Dunning:
        if not self.reminder_days and self.final_notice_days is None:
            raise ValueError("dunning needs reminder_days or final_notice_days: nothing to send")
        return self


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ApiKey(Strict):
    """One producer's key for `POST /v1/events` (SPEC 9). Only its SHA-256 is in the catalog
    (`meterbook api-key` makes a key and prints the entry); `customers` limits what it may send
    for; `revoked: true` refuses it with 403 while the others keep working."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    sha256: Sha256Hex
    customers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = (
        None
    )
    revoked: bool = False


class EventsApi(Strict):
    """How `POST /v1/events` writes landing files and when it pushes back (SPEC 9), and how
    often `meterbook follow` ingests them."""

    # the open file under landing/events/api/ is renamed (and so ingestible) after this long,
    rotate_seconds: Annotated[Decimal, Field(gt=0, le=3600)] = Decimal(5)
    # or after this many events, whichever comes first
    rotate_events: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    max_batch_bytes: Annotated[int, Field(ge=1_024, le=1 << 30)] = 5 << 20  # else 413
    max_batch_events: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000  # else 413
    max_event_bytes: Annotated[int, Field(ge=256, le=10_000_000)] = 64 << 10  # else refused
    # written but not ingested yet (open file included): above it, 429 with Retry-After
    max_backlog_bytes: Annotated[int, Field(ge=1 << 20, le=1 << 40)] = 1 << 30
    follow_seconds: Annotated[Decimal, Field(gt=0, le=86_400)] = Decimal(30)


class PostgresStorage(Strict):
    """A PostgreSQL database for the Dagster instance's runs, event log and schedules, so the
    webserver, the daemon and several people share one history. Only the name of the
    variable holding the password is in the catalog, as for smtp."""

    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\[\]-]+$", max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]*$", max_length=63)]
    username: Annotated[str, Field(min_length=1, max_length=63)]
    password_env: EnvName | None = None  # None: the server trusts this user (peer, trust)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: object) -> object:
        return _refuse_password(data)


class DagsterStorage(Strict):
    """Where the Dagster instance keeps its runs (`settings.dagster_storage`); unset, SQLite
    files under the workspace's dagster/ folder."""

    postgres: PostgresStorage


def _percentage(value: object) -> object:
    # "50%" and 50 are the same wish: the pydantic message ("a valid decimal") would not say so
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().endswith("%")):
        raise ValueError(f"anomaly_pct is a number of percent, like 50 for 50%; not {value!r}")
    return value


AnomalyPercent = Annotated[
    Decimal, BeforeValidator(_percentage), Field(gt=0, le=10_000, decimal_places=4)
]


class Settings(Strict):
    invoice_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")] = "MB"
    grace_days: Annotated[int, Field(ge=0, le=365)] = 3
    default_currency: Currency = "USD"
    # the sensor leaves a landing file alone until it is this old (a producer may still write)
    landing_settle_seconds: Annotated[int, Field(ge=0, le=86_400)] = 30
    # a longer line, or a file that decompresses to more, is one `malformed` line
    max_line_bytes: Annotated[int, Field(ge=1_024, le=1 << 30)] = 10_000_000
    max_decompressed_bytes: Annotated[int, Field(ge=1_024, le=1 << 40)] = 64 << 30
    # who issues the invoices: printed at the top of every invoice document
    seller: Seller | None = None
    # decimals shown for quantities on documents; None: as billed, at most 4 (JSON keeps all)
    display_decimals: DisplayDecimals | None = None
    # the revenue journal's account names (meterbook revenue --journal)
    accounts: Accounts = Accounts()
    # where alerts are delivered (SPEC 9); without it alerts are recorded but not sent
    webhook: Webhook | None = None
    # who may POST events (SPEC 9), and how the events API writes and pushes back
    api_keys: list[ApiKey] = []
    events_api: EventsApi = EventsApi()
    # reminders for overdue invoices (SPEC 11) and the mail server that sends them; without
    # smtp, what is due is recorded (and listed by `meterbook dunning`) but not sent
    dunning: Dunning | None = None
    smtp: Smtp | None = None
    # an invoice whose total moved by more than this percentage against the same
    # subscription's previous invoice is an anomaly (SPEC 10): the close warns, `meterbook
    # leakage` lists it. A percentage (50 for 50%); up to 10,000 (a hundredfold move).
    anomaly_pct: AnomalyPercent = Decimal(50)
    # the Dagster instance's storage (runs, event log, schedules): PostgreSQL for a webserver,
    # a daemon and several users sharing one history; unset, SQLite in the workspace
    dagster_storage: DagsterStorage | None = None
    # the engine of the usage models that read every event (fates, daily usage, the windows'
    # quantities): DuckDB, embedded; or Spark, its connection from the environment
    # (README, "The same dbt project on Spark"), handing results back to DuckDB for billing
    warehouse: Literal["duckdb", "spark"] = "duckdb"


class Condition(Strict):
    """A comparison of one property (or a top-level event field) with a value or values."""

    property: PropertyName | None = None
    field: Literal["customer_id", "event_name", "source"] | None = None
    op: Op
    value: str | int | Decimal | bool | None = None
    values: list[str | int | Decimal | bool] | None = None

    @field_validator("value")
    @classmethod
    def _comparable(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("op") in ("gt", "gte", "lt", "lte") and _is_number(value):
            problem = decimal_problem(Decimal(str(value)))
            if problem:
                raise ValueError(f"{problem}: events are compared as DECIMAL(38, 12)")
        return value

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        if (self.property is None) == (self.field is None):
            raise ValueError("give exactly one of 'property' or 'field'")
        if self.op in ("in", "not_in"):
            if not self.values:
                raise ValueError(f"op '{self.op}' needs a non-empty 'values' list")
            if self.value is not None:
                raise ValueError(f"op '{self.op}' takes 'values', not 'value'")
        else:
            if self.value is None:
                raise ValueError(f"op '{self.op}' needs 'value'")
            if self.values is not None:
                raise ValueError(f"op '{self.op}' takes 'value', not 'values'")
        if self.op in ("gt", "gte", "lt", "lte") and not _is_number(self.value):
            raise ValueError(f"op '{self.op}' compares numbers: 'value' must be a number")
        return self


class Exclusion(Condition):
    reason: Annotated[str, Field(min_length=1, max_length=100)]
    # optional: the rule applies to this event name only
    event_name: Annotated[str, Field(min_length=1)] | None = None


class Unit(Strict):
    divide_by: Positive = Decimal(1)
    rounding: Literal["up", "down", "nearest", "none"] | None = None


class Meter(Strict):
    code: Code
    name: str | None = None
    event_name: Annotated[str, Field(min_length=1)]
    aggregation: Aggregation
    expression: str | None = None
    filters: list[Condition] = []
    group_by: list[PropertyName] = []
    unit: Unit | None = None
    # decimals shown on documents; overrides settings.display_decimals for this meter
    display_decimals: DisplayDecimals | None = None

    @model_validator(mode="after")
    def _expression_needed(self) -> Meter:
        if self.aggregation != "count" and not self.expression:
            raise ValueError(f"aggregation '{self.aggregation}' needs an 'expression'")
        if self.aggregation == "count" and self.expression:
            raise ValueError("aggregation 'count' counts events and takes no 'expression'")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by names a property twice")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.code


class Tier(Strict):
    up_to: Positive | None
    unit_price: NonNegative = Decimal(0)
    flat_fee: NonNegative = Decimal(0)


class Pricing(Strict):
    """The pricing fields of a charge; a price override replaces exactly these."""

    model: ChargeModel
    unit_price: NonNegative | None = None
    package_size: Positive | None = None
    package_price: NonNegative | None = None
    tiers: list[Tier] | None = None
    rate: NonNegative | None = None

    @model_validator(mode="after")
    def _fields_for_model(self) -> Pricing:
        needed = {
            "per_unit": ("unit_price",),
            "package": ("package_size", "package_price"),
            "graduated": ("tiers",),
            "volume": ("tiers",),
            "percentage": ("rate",),
        }[self.model]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"model '{self.model}' needs {', '.join(missing)}")
        pricing = ("unit_price", "package_size", "package_price", "tiers", "rate")
        extra = [n for n in pricing if n not in needed and getattr(self, n) is not None]
        if extra:
            raise ValueError(f"model '{self.model}' does not use {', '.join(extra)}")
        return self

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, tiers: list[Tier] | None) -> list[Tier] | None:
        if tiers is not None:
            _check_tiers(tiers)
        return tiers


def _check_tiers(tiers: list[Tier]) -> None:
    if not tiers:
        raise ValueError("tiers: at least one tier is needed")
    bounds = [t.up_to for t in tiers]
    if bounds[-1] is not None:
        raise ValueError("tiers: the last tier must be open (up_to: null)")
    if any(b is None for b in bounds[:-1]):
        raise ValueError("tiers: only the last tier may have up_to: null")
    closed = bounds[:-1]
    if any(b >= c for b, c in zip(closed, closed[1:], strict=False)):
        raise ValueError("tiers: up_to must increase strictly (tiers unsorted or overlapping)")


class Charge(Pricing):
    meter: Code
    name: str | None = None
    free_units: NonNegative = Decimal(0)
    minimum: NonNegative | None = None
    maximum: NonNegative | None = None
    # the price of the units promotional credits still cover (SPEC 7); per_unit only
    credit_price: Positive | None = None

    @field_validator("credit_price")
    @classmethod
    def _per_unit_only(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        # a field validator, not a model one: the error then names charges[i].credit_price
        model = info.data.get("model")
        if value is not None and model is not None and model != "per_unit":
            raise ValueError(f"credit_price is only for per_unit charges; this charge is {model}")
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> Charge:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is larger than maximum")
        return self


class FixedFee(Strict):
    code: Code
    name: str | None = None
    amount: NonNegative
    timing: Literal["in_advance", "in_arrears"] = "in_advance"


def _default_scope(kind: str, applies_to: str | None) -> str:
    """What a grant pays for when `applies_to` is not given: usage for promotional, all for paid."""
    if applies_to is not None:
        return applies_to
    return "usage" if kind == "promotional" else "all"


class Rollover(Strict):
    """The unused part of a period grant, up to `max`, becomes a grant of the next period."""

    max: NonNegative


class PlanCreditGrant(Strict):
    """Credits granted to every subscription of a plan version (SPEC 7)."""

    code: Code
    kind: GrantKind = "promotional"
    amount: Positive
    every: Literal["start", "period"]
    expires_after_days: Annotated[int, Field(ge=1, le=36_525)] | None = None
    rollover: Rollover | None = None
    priority: Priority = 10
    applies_to: GrantScope | None = None

    @field_validator("expires_after_days")
    @classmethod
    def _start_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("every") == "period":
            raise ValueError(
                "expires_after_days is only for every: start; a period grant expires at the "
                "end of its period"
            )
        return value

    @field_validator("rollover")
    @classmethod
    def _period_only(cls, value: Rollover | None, info: ValidationInfo) -> Rollover | None:
        if value is not None and info.data.get("every") == "start":
            raise ValueError("rollover is only for every: period; a start grant is given once")
        return value

    @property
    def effective_applies_to(self) -> str:
        return _default_scope(self.kind, self.applies_to)


class Feature(Strict):
    """Something a plan grants (SPEC 9): on or off, or a limit on a meter's period quantity."""

    code: Code
    name: str | None = None
    type: Literal["boolean", "limit"]
    meter: Code | None = None

    @model_validator(mode="after")
    def _meter_for_limits(self) -> Feature:
        if self.type == "limit" and self.meter is None:
            raise ValueError("a limit feature needs the meter it limits (meter: CODE)")
        if self.type == "boolean" and self.meter is not None:
            raise ValueError("a boolean feature has no meter (use type: limit to limit one)")
        return self


class LimitEntitlement(Strict):
    """A limit on a feature's meter for the period; soft: going over is allowed (and billed)."""

    limit: NonNegative
    soft: bool = False


# per plan version, by feature code: true/false for a boolean feature, {limit, soft} for a
# limit feature (`true` there grants it with no limit, `false` denies it)
EntitlementValue = bool | LimitEntitlement


class PlanVersion(Strict):
    version: Annotated[int, Field(ge=1)]
    effective_from: date
    trial_days: Days = 0
    fixed_fees: list[FixedFee] = []
    charges: list[Charge] = []
    minimum_spend: NonNegative | None = None
    maximum_spend: NonNegative | None = None
    # codes unique within the version: checked in validation.py, with the second one's path
    credit_grants: list[PlanCreditGrant] = []
    entitlements: dict[Code, EntitlementValue] = {}

    @model_validator(mode="after")
    def _unique_codes(self) -> PlanVersion:
        _unique([f.code for f in self.fixed_fees], "fixed fee code")
        _unique([c.meter for c in self.charges], "charge meter")
        if (
            self.minimum_spend is not None
            and self.maximum_spend is not None
            and self.minimum_spend > self.maximum_spend
        ):
            raise ValueError("minimum_spend is larger than maximum_spend")
        return self


class Plan(Strict):
    code: Code
    name: str | None = None
    currency: Currency
    interval: Literal["month", "quarter", "year"] = "month"
    versions: Annotated[list[PlanVersion], Field(min_length=1)]

    def version_at(self, day: date) -> PlanVersion | None:
        """The version in force on `day`: the latest effective_from on or before it."""
        in_force = [v for v in self.versions if v.effective_from <= day]
        return max(in_force, key=lambda v: v.effective_from) if in_force else None


class Customer(Strict):
    id: Code
    name: str | None = None
    email: str | None = None
    currency: Currency | None = None
    timezone: str = "UTC"
    tax_rate: TaxRate = Decimal(0)
    billable: bool = True
    parent_id: Code | None = None
    collection_method: Literal["charge_automatically", "send_invoice"] = "charge_automatically"
    days_until_due: Days | None = None
    # printed under the customer's name on invoice documents
    address: AddressLines = []
    tax_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _not_own_parent(self) -> Customer:
        if self.parent_id == self.id:
            raise ValueError("a customer cannot be its own parent")
        return self


class PriceOverride(Pricing):
    meter: Code
    effective_from: date | None = None
    effective_to: date | None = None

    @model_validator(mode="after")
    def _window(self) -> PriceOverride:
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        return self


class Discount(Strict):
    code: Code
    percent_off: Annotated[Decimal, Field(gt=0, le=100, decimal_places=12)]
    applies_to: Literal["usage", "fixed_fees", "all"] = "all"
    periods: Annotated[int, Field(ge=1)] | None = None


class AutoTopUp(Strict):
    """After a close, a paid grant of `amount` when the paid balance left is below `below`."""

    below: NonNegative
    amount: Positive


class EntitlementOverride(Strict):
    """A subscription's own value for a feature over [effective_from, effective_to): replaces
    the plan's while in force (SPEC 9). `limit`/`soft` for a limit feature (a limit given
    alone keeps the plan's `soft`), `enabled` to grant or deny any feature."""

    feature: Code
    limit: NonNegative | None = None
    soft: bool | None = None
    enabled: bool | None = None
    effective_from: date
    effective_to: date | None = None

    @model_validator(mode="after")
    def _something_and_dates(self) -> EntitlementOverride:
        if self.limit is None and self.soft is None and self.enabled is None:
            raise ValueError("an override sets limit, soft or enabled")
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from (it is exclusive)")
        return self

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day < self.effective_to)


# Thresholds as written ("80.00"): the text is what a notification names.
Threshold = Annotated[Decimal, Field(gt=0, lt=Decimal("1e14"), decimal_places=12)]


class Alert(Strict):
    """Notify when a subscription's period usage of a meter, or its draft's total, crosses a
    threshold (SPEC 9). `plan` and `customer_id` narrow which subscriptions it watches."""

    code: Code
    plan: Code | None = None
    customer_id: Code | None = None
    metric: Literal["usage", "spend"]
    meter: Code | None = None
    thresholds: Annotated[list[Threshold], Field(min_length=1, max_length=100)]

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, values: list[Decimal]) -> list[Decimal]:
        return strictly_increasing("thresholds", values)

    @model_validator(mode="after")
    def _meter_for_usage(self) -> Alert:
        if self.metric == "usage" and self.meter is None:
            raise ValueError("a usage alert needs the meter it watches (meter: CODE)")
        if self.metric == "spend" and self.meter is not None:
            raise ValueError("a spend alert watches the draft's total; it takes no meter")
        return self


class Subscription(Strict):
    id: Code
    customer_id: Code
    plan: Code
    start_date: date
    end_date: date | None = None
    billing_anchor: Literal["calendar", "anniversary"] = "calendar"
    pin_version: bool = False
    trial_end: date | None = None
    quantities: dict[str, NonNegative] = {}
    price_overrides: list[PriceOverride] = []
    discounts: list[Discount] = []
    auto_top_up: AutoTopUp | None = None
    entitlement_overrides: list[EntitlementOverride] = []

    @model_validator(mode="after")
    def _dates(self) -> Subscription:
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date (it is exclusive)")
        _unique([d.code for d in self.discounts], "discount code")
        return self


class CreditGrant(Strict):
    """A one-off grant of credits to a customer's wallet (its parent's for a sub-account)."""

    id: Code
    customer_id: Code
    kind: GrantKind
    amount: Positive
    granted_on: date  # usable for charges incurred on or after this day
    expires_on: date | None = None  # exclusive: the first day it no longer pays; None: never
    priority: Priority = 10  # lower is drawn first
    applies_to: GrantScope | None = None
    # optional; when given it must be the (billing) customer's currency: validation.py
    currency: Currency | None = None

    @field_validator("expires_on")
    @classmethod
    def _after_granted(cls, value: date | None, info: ValidationInfo) -> date | None:
        # a field validator, so the error names credit_grants[...].expires_on
        granted = info.data.get("granted_on")
        if value is not None and granted is not None and value <= granted:
            raise ValueError(f"expires_on {value} is not after granted_on {granted}")
        return value

    @property
    def effective_applies_to(self) -> str:
        return _default_scope(self.kind, self.applies_to)


class Catalog(Strict):
    settings: Settings = Settings()
    exclusions: list[Exclusion] = []
    meters: list[Meter] = []
    plans: list[Plan] = []
    customers: list[Customer] = []
    subscriptions: list[Subscription] = []
    credit_grants: list[CreditGrant] = []
    features: list[Feature] = []
    alerts: list[Alert] = []

    @cached_property
    def _index(self) -> dict[str, dict]:
        # lookups by code or id in O(1): catalogs run to tens of thousands of customers
        return {
            "meters": {m.code: m for m in self.meters},
            "plans": {p.code: p for p in self.plans},
            "customers": {c.id: c for c in self.customers},
        }

    def meter(self, code: str) -> Meter:
        return self._index["meters"][code]

    def plan(self, code: str) -> Plan:
        return self._index["plans"][code]

    def customer(self, customer_id: str) -> Customer:
        return self._index["customers"][customer_id]

    def find_meter(self, code: str) -> Meter | None:
        return self._index["meters"].get(code)

    def find_customer(self, customer_id: str) -> Customer | None:
        return self._index["customers"].get(customer_id)

    def billing_customer(self, customer_id: str) -> Customer:
        """The customer that pays for `customer_id`: its parent for a sub-account."""
        customer = self.customer(customer_id)
        return self.customer(customer.parent_id) if customer.parent_id else customer

    def currency_of(self, customer: Customer) -> str:
        return customer.currency or self.settings.default_currency


def _unique(values: list, what: str) -> None:
    seen: set = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!s} appears twice")
        seen.add(value)


def decimal_problem(value: Decimal) -> str | None:
    """Why `value` cannot be held exactly as DECIMAL(38, 12), or None when it can.

    Such a value would be rounded without a word, or fail the cast in the middle of a close."""
    exponent = value.normalize().as_tuple().exponent  # trailing zeros are no precision
    if not isinstance(exponent, int):
        return f"{value} is not a finite number"
    if exponent < -12:
        return f"{value:f} has more than 12 decimal places"
    if abs(value) >= COMPARABLE_LIMIT:
        return f"{value:f} is too large (at most 26 digits before the point)"
    return None


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | Decimal):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None


def trial_end_of(sub: Subscription, plan: Plan) -> date | None:
    """The first day no longer in trial: the subscription's trial_end, else start_date plus
    the trial_days of the version in force at start_date (pinned or not)."""
    if sub.trial_end is not None:
        return sub.trial_end
    first = plan.version_at(sub.start_date)
    if first is None or first.trial_days == 0:
        return None
    return sub.start_date + timedelta(days=first.trial_days)
