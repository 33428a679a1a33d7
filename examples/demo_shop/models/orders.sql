-- PR change: returned orders now count as orders, cancelled ones no longer do, and the
-- amount moves from decimal(10,2) to double.
select
    order_id,
    customer_id,
    order_date,
    status,
{% if var('pr') %}
    amount_cents / 100.0 as amount
from {{ ref('stg_orders') }}
where status <> 'cancelled'
{% else %}
    cast(amount_cents / 100.0 as decimal(10, 2)) as amount
from {{ ref('stg_orders') }}
where status <> 'returned'
{% endif %}
