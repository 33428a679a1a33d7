-- depends_on: {{ ref('raw_payments') }}
-- (the source is the seed's table: this line makes dbt build the seed first)
select payment_method, count(*) as payments
from {{ source('raw', 'raw_payments') }}
group by payment_method
