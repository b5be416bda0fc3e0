{#
  Column expressions the staging views of several sources share.
#}

{#- `nullif(trim(c), '') as c` for each column: published text whose blank means "not given". -#}
{% macro blank_to_null(columns) -%}
    {%- for column in columns %}
        nullif(trim({{ column }}), '') as {{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{#- A block's lineage where the block is a month (`_block_month` = 'YYYY-MM'): the block key as
    landed, the month's first day as a date, and when the block landed. -#}
{% macro block_month_lineage() -%}
    _block_month,
    cast(_block_month || '-01' as date) as block_month,
    _landed_at
{%- endmacro %}


{#- A published text with the given markers for "withheld" (compared upper-cased, after trim) as null,
    else trimmed (and upper-cased with `upper=true`). `prefix`: values starting with it are withheld too. -#}
{% macro withheld_to_null(column, markers, prefix=none, upper=false) -%}
    case
        when upper(trim({{ column }})) in ('{{ markers | join("', '") }}')
            {%- if prefix %} or trim({{ column }}) like '{{ prefix }}%'{% endif %} then null
        else {{ 'upper(trim(' ~ column ~ '))' if upper else 'trim(' ~ column ~ ')' }}
    end
{%- endmacro %}


{#- An MDS block's lineage (a block is one provider and one UTC month): the block month as landed,
    the block key `<provider>/<YYYY-MM>` and when the block landed. -#}
{% macro mds_block_lineage() -%}
    _block_month,
    provider || '/' || _block_month as _block_id,
    cast(_landed_at as timestamptz) as _landed_at
{%- endmacro %}
