{#
  accepted_values for a list column (varchar[]): fails on every element, of any row's list, outside
  `values`. Null lists and null elements pass (as in dbt's accepted_values).
#}
{% test accepted_list_values(model, column_name, values) %}

with elements as (

    select unnest({{ column_name }}) as value
    from {{ model }}
    where {{ column_name }} is not null

)

select value, count(*) as n_rows
from elements
where value is not null
  and value not in (
      {%- for value in values %}'{{ value | replace("'", "''") }}'{{ ',' if not loop.last }}{% endfor -%}
  )
group by value

{% endtest %}
