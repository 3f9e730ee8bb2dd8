{#
  Metering reads the compiled SQL of meters and exclusions from meterbook_catalog at compile
  time. That SQL is written only by orchestration/catalog/tables/metering.py, from the
  validated catalog (names quoted, values as literals, expressions through the safe parser).
  At parse time (execute is false) there are no rows: the model SQL then has no branches.
#}
{% macro metering_catalog_rows(relation, order_by) %}
  {% if not execute %}
    {{ return([]) }}
  {% endif %}
  {% set result = run_query('select * from ' ~ relation ~ ' order by ' ~ order_by) %}
  {{ return(result.rows) }}
{% endmacro %}

{# A partition bound (min_date, max_date) that must be a date 'YYYY-MM-DD', as a SQL date
   literal; anything else fails. #}
{% macro metering_date_literal(name) %}
  {%- set value = meterbook_partition(name) | string -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
    {{ exceptions.raise_compiler_error(name ~ " must be a date YYYY-MM-DD, got " ~ value) }}
  {%- endif -%}
  date '{{ value }}'
{%- endmacro %}

{# The close_month var (checked by billing_close_month) as a SQL string literal, or none. #}
{% macro metering_close_month_literal() %}
  {%- set value = billing_close_month() -%}
  {{ return(none if value is none else "'" ~ value ~ "'") }}
{%- endmacro %}

{#
  The span of the metering windows of var close_month (of every month when it is not set; of
  `windows` when given: metering_windows_of), as
  SQL predicates on `column`, read at compile time like the catalog: (from the first window's
  start, before the last window's end), or `false` twice when there is no window. A literal
  bound reaches the scan of the raw events inside int_events_metered; a bound read from a
  subquery does not, and DuckDB then joins and buffers every billable event with its
  properties first (152 s of a 100M-event usage build that had no windows at all).
#}
{% macro metering_window_bounds(column, windows=none) %}
  {% if not execute %}
    {{ return(('false', 'false')) }}
  {% endif %}
  {%- set query -%}
    select
        {{ mb_utc_text('min(window_start)') }},
        {{ mb_utc_text('max(window_end)') }}
    from {{ metering_windows_of(windows) }}
  {%- endset -%}
  {%- set row = run_query(query).rows[0] -%}
  {%- if row[0] is none -%}
    {{ return(('false', 'false')) }}
  {%- endif -%}
  {{ return((
      column ~ " >= " ~ mb_utc_instant(row[0]),
      column ~ " < " ~ mb_utc_instant(row[1]))) }}
{% endmacro %}

{#
  The billing customers of the metering windows of var close_month, as a predicate on
  `column`: a literal IN list when they are few (a re-rate of the subscriptions late events
  touched), `true` otherwise. Exact either way: events of other customers match no window.
  A literal list reaches the scan of the fates, so the events of the month's other customers
  are never joined to their properties nor metered (at 30M events, a re-rate of 940 of
  10,000 customers spent 20 s metering everyone's events before the join dropped them).
#}
{% macro metering_window_customers(column, at_most=1000, windows=none) %}
  {% if not execute %}
    {{ return('true') }}
  {% endif %}
  {%- set query -%}
    select distinct billing_customer_id from {{ metering_windows_of(windows) }}
    order by 1 limit {{ at_most + 1 }}
  {%- endset -%}
  {%- set ids = run_query(query).columns[0].values() -%}
  {%- if ids | length == 0 or ids | length > at_most -%}
    {{ return('true') }}
  {%- endif -%}
  {%- set quoted = [] -%}
  {%- for id in ids -%}
    {%- do quoted.append("'" ~ (id | replace("'", "''")) ~ "'") -%}
  {%- endfor -%}
  {{ return(column ~ ' in (' ~ quoted | join(', ') ~ ')') }}
{% endmacro %}

{# The same span as UTC days, a predicate on the event_date `column`: a literal bound on the
   fates (stored in read order) skips the row groups of other months. #}
{% macro metering_window_dates(column, windows=none) %}
  {%- set from_first_start, before_last_end = metering_window_bounds('x', windows) -%}
  {%- if from_first_start == 'false' -%}
    {{ return('false') }}
  {%- endif -%}
  {%- set first = from_first_start.split("'")[1][:10] -%}
  {%- set last = before_last_end.split("'")[1][:10] -%}
  {{ return(column ~ " >= date '" ~ first ~ "' and " ~ column ~ " <= date '" ~ last ~ "'") }}
{% endmacro %}

{# The windows the bounds above read: `windows` (a relation of windows, all of them), else
   the close's metering windows of var close_month (of every month when it is not set). #}
{% macro metering_windows_of(windows) -%}
  {%- if windows is not none -%}
    {{ windows }}
  {%- else -%}
    {%- set month = metering_close_month_literal() -%}
    (select * from {{ ref('stg_billing__meter_windows') }}
    {%- if month %} where close_month = {{ month }}{% endif %})
  {%- endif -%}
{%- endmacro %}

{# The months a fct_period_meter_quantities run recomputes, deleted before it inserts them. #}
{% macro period_quantities_delete_months(relation) %}
  {%- set month = metering_close_month_literal() -%}
  {%- if month -%}
    delete from {{ relation }} where close_month = {{ month }}
  {%- else -%}
    delete from {{ relation }} where close_month in (
        select close_month from {{ ref('stg_billing__meter_windows') }})
  {%- endif -%}
{% endmacro %}

{# Quantity and event count per group of `source`, each meter by its own aggregation:
   one branch per aggregation, each reading only its meters' rows (the filter on the literal
   `aggregation` column of int_events_metered prunes the other meters' branches, so their
   values are never computed). Computing every aggregate for every row made daily usage 2.5x
   as slow (arg_max over a struct and count distinct cost the most). `last_value_for`:
   the aggregations whose quantity is the last value by timestamp (tie: the larger event_id,
   then read_seq for determinism). `source` must be a view or a not-materialized CTE. #}
{% macro metering_quantities(source, group_columns, last_value_for) -%}
{%- for aggregation in ['count', 'sum', 'count_unique', 'max', 'min'] %}
    select {{ group_columns }}, count(*) as event_count, {{ metering_quantity(aggregation, []) }} as quantity
    from {{ source }}
    where aggregation = '{{ aggregation }}'
    group by all
    union all
{%- endfor %}
    select
        {{ group_columns }},
        count(*) as event_count,
        {{ metering_quantity(last_value_for[0], last_value_for) }} as quantity
    from {{ source }}
    where aggregation in ('{{ last_value_for | join("', '") }}')
    group by all
{%- endmacro %}

{# The quantity of one aggregation over the rows of a group (columns of int_events_metered);
   the aggregations in `last_value_for` take the group's last value. #}
{% macro metering_quantity(aggregation, last_value_for) -%}
{%- if aggregation in last_value_for -%}
    {{ mb_last_value('value', 'event_ts, event_id, read_seq') }}
{%- elif aggregation == 'count' -%}
    cast(count(*) as decimal(38, 12))
{%- elif aggregation == 'sum' -%}
    sum(value)
{%- elif aggregation == 'count_unique' -%}
    cast(count(distinct text_value) as decimal(38, 12))
{%- elif aggregation == 'max' -%}
    max(value)
{%- elif aggregation == 'min' -%}
    min(value)
{%- else -%}
    {{ exceptions.raise_compiler_error("no quantity for aggregation " ~ aggregation) }}
{%- endif -%}
{%- endmacro %}

{# The billable events with the columns the meters read: the narrow fates joined back to the
   raw events on read_seq. `where` narrows the fates (e.g. to a date range). #}
{% macro metering_billable_events(where='true') -%}
    select
        events.read_seq,
        events.event_id,
        events.customer_id,
        events.event_name,
        events.event_ts,
        events.properties,
        events.source,
        fates.billing_customer_id,
        fates.event_date
    from {{ ref('int_events_fated') }} as fates
    inner join {{ ref('stg_meterbook__raw_events') }} as events
        on events.read_seq = fates.read_seq
    where fates.fate = 'billable' and {{ where }}{{ metering_read_seq_cap('fates.read_seq') }}
{%- endmacro %}

{# METERBOOK_MAX_READ_SEQ, when set (a price backtest replaying a closed month): only the
   events read up to the month's build count, so later (late) events do not. Unset: nothing. #}
{% macro metering_read_seq_cap(column) -%}
    {%- set value = meterbook_partition('max_read_seq') | string -%}
    {%- if value -%}
        {%- if not modules.re.fullmatch('[0-9]{1,18}', value) -%}
            {{ exceptions.raise_compiler_error("max_read_seq must be a whole number, got " ~ value) }}
        {%- endif %} and {{ column }} <= {{ value }}
    {%- endif -%}
{%- endmacro %}

{# The metered events of `meters` (rows of stg_catalog__meters): one row per billable event
   passing `where` x meter that counts it, the columns of int_events_metered. A query of its
   own (a WITH), for a view or a CTE. The billable events are read by every meter's branch,
   so DuckDB joins them once and buffers the join: only the columns the branches read (at
   10M events, when daily usage still read the view, one day took 0.6 s this way against
   3.2 s joining once per branch). `where` reaches the scans of the fates and the raw events
   themselves: a filter on the view's output did not reach the fates (DuckDB's profile), so
   a consumer that needs a month passes its bounds here. #}
{% macro metering_events(meters, where='true') -%}
    with billable as (
        {{ metering_billable_events(where) }}
    ),

    -- one branch per meter: the events it counts, with the value its aggregation needs
    metered as (
        {%- for meter in meters %}
        {{ metering_meter_rows(meter, 'billable') }}
        union all
        {%- endfor %}
        select
            read_seq, event_id, customer_id, billing_customer_id, event_ts, event_date,
            cast(null as integer) as meter_seq,
            cast(null as {{ mb_text() }}) as aggregation,
            cast(null as decimal(38, 12)) as value,
            cast(null as {{ mb_text() }}) as text_value,
            cast(null as {{ mb_json() }}) as group_key
        from billable
        where false
    ),

    meters as (
        select meter_seq, meter_code from {{ ref('stg_catalog__meters') }}
    )

    select
        metered.read_seq,
        metered.event_id,
        metered.customer_id,
        metered.billing_customer_id,
        metered.event_ts,
        metered.event_date,
        metered.meter_seq,
        meters.meter_code,
        metered.aggregation,
        metered.value,
        metered.text_value,
        metered.group_key
    from metered
    inner join meters on metered.meter_seq = meters.meter_seq
{%- endmacro %}

{# One meter's events of `source` (metering_billable_events), with the value its
   aggregation needs: the columns of int_events_metered but meter_code. #}
{% macro metering_meter_rows(meter, source) -%}
    select
        read_seq,
        event_id,
        customer_id,
        billing_customer_id,
        event_ts,
        event_date,
        {{ meter['meter_seq'] }} as meter_seq,
        {{ metering_aggregation_literal(meter['aggregation']) }} as aggregation,
        cast({{ meter['value_sql'] or 'null' }} as decimal(38, 12)) as value,
        cast({{ meter['text_value_sql'] or 'null' }} as {{ mb_text() }}) as text_value,
        cast({{ meter['group_key_sql'] }} as {{ mb_json() }}) as group_key
    from {{ source }}
    where {{ meter['match_sql'] }}
{%- endmacro %}

{# A meter's aggregation as a SQL literal (the catalog admits only the seven names; quoted all
   the same, like every other catalog value spliced into SQL). #}
{% macro metering_aggregation_literal(aggregation) -%}
  '{{ aggregation | replace("'", "''") }}'
{%- endmacro %}
