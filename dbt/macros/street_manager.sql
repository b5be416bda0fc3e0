{#
  Helpers of the Street Manager models (staging events and the street works marts).
#}

{#- The envelope every Street Manager event carries (permit, activity and section 58 alike). -#}
{% macro street_manager_event_envelope() -%}
    event_reference,
    event_type,
    event_type_published,
    event_time,
    version as schema_version
{%- endmacro %}


{#- The UK-local calendar date of a UTC instant: the day a reader in the UK means by it. -#}
{% macro uk_local_date(instant) -%}
    cast(timezone('Europe/London', {{ instant }}) as date)
{%- endmacro %}



{#- An event's start and end as published (UTC instants of UK-local day boundaries; with `times`,
    the published times of day too), then their UK-local dates `<prefix>start_local_date` and
    `<prefix>end_local_date`. -#}
{% macro start_and_end_with_uk_local_dates(prefix='', times=true) -%}
    {{ prefix }}start_date,
    {%- if times %}
    {{ prefix }}start_time,
    {%- endif %}
    {{ prefix }}end_date,
    {%- if times %}
    {{ prefix }}end_time,
    {%- endif %}
    {{ uk_local_date(prefix ~ 'start_date') }} as {{ prefix }}start_local_date,
    {{ uk_local_date(prefix ~ 'end_date') }} as {{ prefix }}end_local_date
{%- endmacro %}

{#- The street and its highway authority as of a group's latest event (arg_max by event_time):
    the names a permit's events published last. -#}
{% macro latest_street_and_authority() -%}
    arg_max(street_name, event_time) as street_name,
    arg_max(town, event_time) as town,
    arg_max(highway_authority_swa_code, event_time) as highway_authority_swa_code,
    arg_max(highway_authority, event_time) as highway_authority_published
{%- endmacro %}


{#-
  Works counted per month (`block_month`), highway authority and promoter, plus `dimensions`: the
  month rows of int_permit_months matching `works_where`, DfT test data always left out. Counted:
  every work (named `total`), the works at each status of `statuses` (`works_<status>`), then each
  [expression, name] of `measures`. Names come from the swa_codes seed, else the latest published
  name. Columns: month, highway_authority_swa_code, highway_authority, promoter_swa_code,
  promoter_organisation, promoter_sector, the dimensions, the counts; ordered by the keys.
-#}
{% macro works_per_authority_and_promoter(works_where='true', dimensions=[], total='works', statuses=[], measures=[]) -%}
    {%- set keys = ['highway_authority_swa_code', 'promoter_swa_code'] + dimensions -%}
    {%- set counts = [['count(*)', total]] -%}
    {%- for status in statuses -%}
        {%- do counts.append(["count(*) filter (where work_status_ref = '" ~ status ~ "')", 'works_' ~ status]) -%}
    {%- endfor -%}
    {%- set counts = counts + measures -%}
with works as (

    select * from {{ ref('int_permit_months') }}
    where not is_test_data
      and ({{ works_where }})

),

swa as (

    select * from {{ ref('swa_codes') }}

),

counted as (

    select
        block_month as month,
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        arg_max(highway_authority, event_time) as highway_authority_published,
        arg_max(promoter_organisation, event_time) as promoter_organisation_published,
        {%- for expression, name in counts %}
        {{ expression }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from works
    group by block_month, {{ keys | join(', ') }}

)

select
    counted.month,
    counted.highway_authority_swa_code,
    coalesce(authority.organisation_name, counted.highway_authority_published) as highway_authority,
    counted.promoter_swa_code,
    coalesce(promoter.organisation_name, counted.promoter_organisation_published) as promoter_organisation,
    promoter.sector as promoter_sector,
    {%- for dimension in dimensions %}
    counted.{{ dimension }},
    {%- endfor %}
    {%- for expression, name in counts %}
    counted.{{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
from counted
left join swa as authority on authority.swa_code = counted.highway_authority_swa_code
left join swa as promoter on promoter.swa_code = counted.promoter_swa_code
order by month, {{ keys | join(', ') }}
{%- endmacro %}
