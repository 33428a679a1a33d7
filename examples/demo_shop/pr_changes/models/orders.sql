-- The PR's version: returned orders count, cancelled ones no longer do; amount becomes a double.
select
    order_id,
    customer_id,
    order_date,
    status,
    amount_cents / 100.0 as amount
from {{ ref('stg_orders') }}
where status <> 'cancelled'
