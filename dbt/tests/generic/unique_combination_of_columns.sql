{#
  Hand-written stand-in for dbt_utils.unique_combination_of_columns (no dbt hub offline).
  Nulls compare equal (IS NOT DISTINCT FROM semantics), so an "unknown area" row counts once.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
