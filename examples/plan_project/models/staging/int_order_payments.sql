{{ config(materialized='ephemeral') }}
select order_id, sum(amount) as amount, max(paid_at) as paid_at
from {{ ref('stg_payments') }}
group by order_id
