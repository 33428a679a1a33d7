-- The PR's version: e-mails lower-cased, a new column flags repeat customers.
with order_stats as (
    select customer_id, min(order_date) as first_order, max(order_date) as last_order,
           count(*) as number_of_orders, sum(amount) as lifetime_value
    from {{ ref('orders') }}
    group by customer_id
)
select
    c.customer_id,
    c.first_name,
    c.last_name,
    lower(c.email) as email,
    s.first_order,
    s.last_order,
    coalesce(s.number_of_orders, 0) as number_of_orders,
    cast(coalesce(s.lifetime_value, 0) as decimal(12, 2)) as lifetime_value
    , coalesce(s.number_of_orders, 0) > 1 as is_repeat
from {{ ref('stg_customers') }} c
left join order_stats s on s.customer_id = c.customer_id
