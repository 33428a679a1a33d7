select distinct order_date as date_day, extract(year from order_date) as year from {{ ref('stg_orders') }}
