{{ config(materialized='incremental', unique_key=['customer_id', 'order_id']) }}
select customer_id, order_id, order_date
from {{ ref('orders') }}
{% if is_incremental() %}
where order_date > (select max(order_date) from {{ this }})
{% endif %}
