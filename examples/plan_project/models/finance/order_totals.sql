{{ config(alias='order_totals_v') }}
select order_date, sum(amount) as amount from {{ ref('orders') }} group by order_date
