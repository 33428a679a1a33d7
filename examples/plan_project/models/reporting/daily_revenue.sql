select order_date, count(*) as orders, sum(amount) as revenue
from {{ ref('orders') }}
group by order_date
