//! SQL generation: relations, the dialect trait, one file per warehouse.
mod relation;
pub use relation::{Relation, RelationError};
