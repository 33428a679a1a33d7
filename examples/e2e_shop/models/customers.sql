select g as id, 'customer ' || g as name
from generate_series(1, 100) as g
