select c.customer_id, c.first_name, sum(o.amount) as lifetime_value
from {{ ref('customers') }} c
left join {{ ref('orders') }} o using (customer_id)
group by 1, 2
