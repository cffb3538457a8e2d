//! A PostgreSQL condition matching a key column against a short list of
//! keys given as a subquery, written so that the planner reads it through
//! the column's index whatever the table's size.
//!
//! `column = ANY(ARRAY(list))` alone is estimated at ten keys, and ten index
//! probes cost the planner more than reading a table of a thousand or so
//! rows whole (its random page cost is four sequential pages): a new
//! deployment's `consultations`, a load test's, had every row compared with
//! every key of the list for each batch of messages, about half a
//! millisecond of the database's time a batch. Bounding the column between
//! the list's least and greatest key changes nothing in what matches (every
//! key of the list lies between them) but makes the planner's estimate one
//! row, so the index is cheaper than the whole table at any size. The bounds
//! compare with the database's collation, as the index and `min`/`max` do.

/// `column` is one of the keys `list` (a `SELECT` of one text column)
/// yields, read through `column`'s index.
pub fn matches_one_of(column: &str, list: &str) -> String {
    format!(
        "{column} = ANY(ARRAY({list})) \
         AND {column} BETWEEN (SELECT min(k) FROM ({list}) AS l(k)) \
           AND (SELECT max(k) FROM ({list}) AS l(k))"
    )
}
