-- Production version. The PR (pr_changes/models/orders.sql) counts returned orders but not
-- cancelled ones, and moves amount from decimal(10,2) to double.
select
    order_id,
    customer_id,
    order_date,
    status,
    cast(amount_cents / 100.0 as decimal(10, 2)) as amount
from {{ ref('stg_orders') }}
where status <> 'returned'
