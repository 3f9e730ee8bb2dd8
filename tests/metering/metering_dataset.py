"""The metering dataset: a catalog and events that touch every metering rule, and the
close windows they are rated in (used by conftest.py's `built` warehouse and the tests)."""

from __future__ import annotations

from metering_fixtures import ev

CATALOG = """
exclusions:
  - {reason: sandbox, property: env, op: in, values: [sandbox, test]}
  - {reason: internal, field: customer_id, op: eq, value: internal-co}
  - {reason: failed_request, property: status, op: eq, value: error, event_name: api.request}
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - {code: calls_by_region, event_name: api.request, aggregation: count, group_by: [region]}
  - code: tokens
    event_name: llm.completion
    aggregation: sum
    expression: input_tokens + output_tokens
    filters: [{property: model, op: in, values: [large, small]}]
    group_by: [model]
    unit: {divide_by: 1000, rounding: up}
  - {code: tokens_down, event_name: llm.completion, aggregation: sum,
     expression: input_tokens + output_tokens, unit: {divide_by: 1000, rounding: down}}
  - {code: tokens_nearest, event_name: llm.completion, aggregation: sum,
     expression: input_tokens + output_tokens, unit: {divide_by: 1000, rounding: nearest}}
  - {code: tokens_k, event_name: llm.completion, aggregation: sum,
     expression: input_tokens + output_tokens, unit: {divide_by: 1000}}
  - {code: agents, event_name: agent.heartbeat, aggregation: count_unique, expression: agent_id}
  - {code: peak, event_name: conn.sample, aggregation: max, expression: conns}
  - {code: low, event_name: conn.sample, aggregation: min, expression: conns}
  - {code: last_conns, event_name: conn.sample, aggregation: latest, expression: conns}
  - {code: seats, event_name: seats.changed, aggregation: time_weighted, expression: seats}
  - {code: gpu_hours, event_name: gpu.usage, aggregation: sum,
     expression: duration_ms * gpu_count / 3600000,
     filters: [{property: kind, op: ne, value: cpu}]}
  - {code: f_eq, event_name: probe, aggregation: count, filters: [{property: tier, op: eq, value: gold}]}
  - {code: f_ne, event_name: probe, aggregation: count, filters: [{property: tier, op: ne, value: gold}]}
  - {code: f_in, event_name: probe, aggregation: count, filters: [{property: tier, op: in, values: [gold, silver]}]}
  - {code: f_not_in, event_name: probe, aggregation: count, filters: [{property: tier, op: not_in, values: [gold, silver]}]}
  - {code: f_gt, event_name: probe, aggregation: count, filters: [{property: size, op: gt, value: 10}]}
  - {code: f_gte, event_name: probe, aggregation: count, filters: [{property: size, op: gte, value: 10}]}
  - {code: f_lt, event_name: probe, aggregation: count, filters: [{property: size, op: lt, value: 10}]}
  - {code: f_lte, event_name: probe, aggregation: count, filters: [{property: size, op: lte, value: 10}]}
customers:
  - {id: acme, currency: USD, timezone: UTC}
  - {id: acme-eu, parent_id: acme}
  - {id: beta}
  - {id: internal-co}
"""

OCT = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
WINDOWS = [
    ("2026-10", "w_acme", "acme", *OCT),
    ("2026-10", "w_beta", "beta", *OCT),
    # two segments of October: each window is aggregated on its own, a time_weighted level
    # weighted by its share of the whole period
    ("2026-10", "w_acme_a", "acme", "2026-10-01T00:00:00Z", "2026-10-16T00:00:00Z", *OCT),
    ("2026-10", "w_acme_b", "acme", "2026-10-16T00:00:00Z", "2026-11-01T00:00:00Z", *OCT),
    ("2026-09", "w_acme_sep", "acme", "2026-09-01T00:00:00Z", *OCT[:1]),
]


def _fates_events() -> list[dict]:
    api = "api.request"
    return [
        ev("r1", "acme", api, "2026-10-02T10:00:00Z", {"region": "eu"}),  # billable
        ev("r1", "acme-eu", api, "2026-10-02T10:00:00Z", {"region": "eu"}),  # own key: billable
        ev("r1", "acme", api, "2026-10-02T10:00:00Z", {"region": "eu"}),  # duplicate
        ev("r2", "acme", api, "2026-10-03T10:00:00Z", {"region": "us"}),  # billable
        ev("r2", "acme", api, "2026-10-03T10:00:00Z", {"region": "eu"}),  # conflict
        ev("r3", "acme", api, "2026-10-04T10:00:00Z", {"status": "error"}),  # failed_request
        ev("r4", "acme", api, "2026-10-04T11:00:00Z", {"env": "sandbox"}),  # sandbox
        ev("r4", "acme", api, "2026-10-04T11:00:00Z", {"env": "sandbox"}),  # duplicate first
        ev("r5", "internal-co", api, "2026-10-04T12:00:00Z"),  # internal
        ev("r6", "nobody", api, "2026-10-05T10:00:00Z"),  # unknown_customer
        ev(None, None, None, None, reason="malformed"),
        ev("r8", "acme", api, None, reason="bad_timestamp"),
        ev("r9", "nobody", api, "2026-10-05T10:00:00Z", {"x": "y"}, reason="bad_property"),
        ev("u1", "acme", "page.view", "2026-10-05T10:00:00Z"),  # unmetered
        ev("g2", "acme", "gpu.usage", "2026-10-05T10:00:00Z", {"kind": "cpu"}),  # unmetered
        ev("r10", "acme", api, "2026-10-06T10:00:00Z", reason="too_far_in_future"),
        ev("r10", "acme", api, "2026-10-06T10:00:00Z"),  # corrected copy: billable
        ev("r11", "acme", api, "2026-10-06T11:00:00Z", path="b.jsonl"),  # billable, 2nd file
        ev("r2", "acme", api, "2026-10-03T10:00:00Z", {"region": "us"}, path="b.jsonl"),  # dup
    ]


def _usage_events() -> list[dict]:
    llm = "llm.completion"
    return [
        ev(
            "t1",
            "acme",
            llm,
            "2026-10-03T12:00:00Z",
            {"input_tokens": 1200, "output_tokens": 310, "model": "large"},
        ),
        ev(
            "t2",
            "acme-eu",
            llm,
            "2026-10-20T12:00:00Z",
            {"input_tokens": "500", "output_tokens": 0, "model": "large"},
        ),
        ev(
            "t3",
            "acme",
            llm,
            "2026-10-10T12:00:00Z",
            {"input_tokens": 100, "output_tokens": 100, "model": "small"},
        ),
        ev(
            "t4",
            "acme",
            llm,
            "2026-10-11T12:00:00Z",
            {"input_tokens": 1290, "output_tokens": 0, "model": "medium"},
        ),
        ev(
            "t5",
            "acme",
            llm,
            "2026-09-30T23:59:59Z",
            {"input_tokens": 7, "output_tokens": 0, "model": "large"},
        ),
        # a rejected first copy does not claim its key: the corrected copy is billed
        ev(
            "t6",
            "acme",
            llm,
            "2026-10-12T12:00:00Z",
            {"input_tokens": "lots", "output_tokens": 0, "model": "large"},
        ),
        ev(
            "t6",
            "acme",
            llm,
            "2026-10-12T12:00:00Z",
            {"input_tokens": 0, "output_tokens": 0, "model": "large"},
        ),
        # bad_property is checked before exclusions
        ev(
            "t8",
            "acme",
            llm,
            "2026-10-12T13:00:00Z",
            {"input_tokens": True, "output_tokens": 0, "env": "sandbox"},
        ),
        ev("a1", "acme", "agent.heartbeat", "2026-10-01T00:00:00Z", {"agent_id": "u-1"}),
        ev("a2", "acme", "agent.heartbeat", "2026-10-02T00:00:00Z", {"agent_id": "u-2"}),
        ev("a3", "acme", "agent.heartbeat", "2026-10-20T00:00:00Z", {"agent_id": "u-1"}),
        ev("a4", "acme", "agent.heartbeat", "2026-10-21T00:00:00Z"),
        ev("a5", "acme", "agent.heartbeat", "2026-10-22T00:00:00Z", {"agent_id": 7}),
        ev("c1", "acme", "conn.sample", "2026-10-05T00:00:00Z", {"conns": 12}),
        ev("c2", "acme", "conn.sample", "2026-10-06T00:00:00Z", {"conns": 48.5}),
        ev("c3", "acme", "conn.sample", "2026-10-20T00:00:00Z", {"conns": "7"}),
        ev("c9", "acme", "conn.sample", "2026-10-20T00:00:00Z", {"conns": 30}),  # tie: c9 > c3
        ev("c5", "acme", "conn.sample", "2026-11-01T00:00:00Z", {"conns": 99}),  # November
        ev("s0", "acme", "seats.changed", "2026-09-20T00:00:00Z", {"seats": 10}),
        ev("s1", "acme", "seats.changed", "2026-10-16T00:00:00Z", {"seats": 20}),
        ev(
            "g1",
            "acme",
            "gpu.usage",
            "2026-10-07T00:00:00Z",
            {"duration_ms": 5400000, "gpu_count": 2},
        ),
        ev(
            "g3",
            "acme",
            "gpu.usage",
            "2026-10-08T00:00:00Z",
            {"duration_ms": 1800000, "gpu_count": "1"},
        ),
        ev("p1", "beta", "probe", "2026-10-09T00:00:00Z", {"tier": "gold", "size": 10}),
        ev("p2", "beta", "probe", "2026-10-09T00:00:00Z", {"tier": "silver", "size": "12.5"}),
        ev("p3", "beta", "probe", "2026-10-09T00:00:00Z", {"size": 3}),
        ev("p4", "beta", "probe", "2026-10-09T00:00:00Z", {"tier": "bronze", "size": "big"}),
        ev("p5", "beta", "probe", "2026-10-09T00:00:00Z", {"size": True}),
    ]


EVENTS = _fates_events() + _usage_events()
