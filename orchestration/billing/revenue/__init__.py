"""Revenue recognition (SPEC 8): the schedule, roll-forwards and journal are dbt models
(dbt_project/models/*/revenue, built by the revenue job from the append-only ledger); this
package reads them for finance: the report, the journal export and the invariants checked."""
