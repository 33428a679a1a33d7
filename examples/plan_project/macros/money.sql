{# cents_to_dollars calls round_money: a change to either reaches every model using cents_to_dollars. #}
{% macro round_money(expr) -%}
    round({{ expr }}, 2)
{%- endmacro %}

{% macro cents_to_dollars(column_name) -%}
    {{ round_money(column_name ~ ' / 100.0') }}
{%- endmacro %}
