select g as id, (g % 100) + 1 as customer_id, g * 10 as amount
from generate_series(1, 1000) as g
