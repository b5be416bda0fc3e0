{#
  accepted_values for the 311 fact's city, over the cities of the dataset files
  (service_request_cities(), generated from them; the category seed's own test holds the seed to the
  same list). Its only parent is the model under test: a relationships test to the seed would also
  be selected with the seed's own node (dbt's eager indirect selection) and fail there, before the
  fact exists.
#}
{% test service_request_city(model, column_name) %}

select {{ column_name }} as value, count(*) as n_rows
from {{ model }}
where {{ column_name }} not in (
    {%- for branch in service_request_cities() %}'{{ branch.city }}'{{ ',' if not loop.last }}{% endfor -%}
)
group by 1

{% endtest %}
