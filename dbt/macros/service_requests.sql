{#
  Helpers of the conformed 311 fact (models/marts/fct_service_requests.sql).
#}

{#- The columns every city's branch of fct_service_requests selects, in this order, with their
    types: the branch contract. A city whose staging view does not exist yet contributes an empty
    relation of exactly these columns. -#}
{% macro service_request_branch_columns() -%}
    {{- return([
        ['city', 'varchar'],
        ['request_id', 'varchar'],
        ['opened_at', 'timestamp'],
        ['closed_at', 'timestamp'],
        ['status', 'varchar'],
        ['request_type', 'varchar'],
        ['standard_request_type', 'varchar'],
        ['area', 'varchar'],
        ['area_system', 'varchar'],
        ['hours_to_close', 'double'],
        ['longitude', 'double'],
        ['latitude', 'double'],
        ['_block_month', 'varchar'],
        ['_landed_at', 'timestamptz'],
    ]) -}}
{%- endmacro %}


{#- A request type without its channel suffix. Minneapolis names one request type differently per
    intake channel (`Pothole` / `Pothole - Open311`, `Unpermitted Work - Self Service`,
    `Sidewalk Snow and Ice - SS City`, `Bike Trail Safety Phone - Open 311`); the category seed is
    keyed on the name without the suffix, so a new channel variant of a known type maps by itself. -#}
{% macro strip_channel_suffix(expr) -%}
    nullif(trim(regexp_replace({{ expr }}, '\s*-\s*(open\s*311|self service|ss city|ss)\s*$', '', 'i')), '')
{%- endmacro %}


{#- Meteorological season of a date or timestamp (northern hemisphere, which every city here is
    in): December-February winter, March-May spring, June-August summer, September-November autumn. -#}
{% macro meteorological_season(expr) -%}
    case
        when month({{ expr }}) in (12, 1, 2) then 'winter'
        when month({{ expr }}) in (3, 4, 5) then 'spring'
        when month({{ expr }}) in (6, 7, 8) then 'summer'
        when month({{ expr }}) in (9, 10, 11) then 'autumn'
    end
{%- endmacro %}
