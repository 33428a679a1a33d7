select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    coalesce(p.amount, 0) as amount,
    {{ cents_to_dollars('100') }} as fee
from {{ ref('stg_orders') }} o
left join {{ ref('int_order_payments') }} p using (order_id)
