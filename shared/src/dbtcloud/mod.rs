//! dbt Cloud (in progress)
