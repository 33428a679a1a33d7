select payment_method, count(*) as payments, sum(amount) as amount, max(paid_at) as paid_at
from {{ ref('stg_payments') }}
group by payment_method
