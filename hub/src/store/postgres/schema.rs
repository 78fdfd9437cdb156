//! The schema, as numbered migrations applied in order (see
//! [`super::migrate`]). A released migration is never edited: a change is
//! a new one.

/// One step of the schema.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL);",
}];

/// The schema version this binary brings a database to.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
