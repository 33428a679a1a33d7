select distinct order_date as date_day from {{ ref('stg_orders') }}
