-- Unchanged by the PR: the demo shows it as "no differences".
select id as payment_id, order_id, method, cast(amount_cents / 100.0 as decimal(10, 2)) as amount
from {{ ref('raw_payments') }}
