//! The schema, as numbered migrations applied in order (see
//! [`super::migrate`]). A released migration is never edited: a change is
//! a new one.
//!
//! Times are milliseconds since the Unix epoch (`bigint`), sequence
//! numbers and counters `bigint`, signed bytes `bytea` exactly as the node
//! or the hub signed them; small records the hub alone reads are postcard
//! (`bytes`), as in the redb store. Ordered text keys use the `C`
//! collation, so their order is byte order, as in redb.
//!
//! Several hub processes write the same tables at once; the rules that
//! keep that safe live in the writes ([`super::write`]): a node's row is
//! locked for the length of a commit that places its entries, and the
//! counters in `meta` are locked in one order (`access-head`, `changes`,
//! `next-plate-ordinal`).
//!
//! For a distributed engine (Citus): the node-owned tables (`entries`,
//! `reads`, `checkpoints`, `node_certs`, `node_access`, `alerts`) are
//! distributed by `node_id`, co-located; `images` by `hash`; every other
//! table is small and is a reference table.

/// One step of the schema.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: INITIAL,
    },
    Migration {
        version: 2,
        name: "login throttle, list numbers learned from nodes",
        sql: LOGINS_AND_FLOORS,
    },
    Migration {
        version: 3,
        name: "user keys",
        sql: USER_KEYS,
    },
];

/// Version 3: every signing key each user has had (postcard
/// `users::UserKey`), by its public key.
const USER_KEYS: &str = r#"
CREATE TABLE user_keys (
    username text COLLATE "C" NOT NULL,
    public bytea NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (username, public)
);
"#;

/// Version 1: every record the hub keeps.
const INITIAL: &str = r#"
-- Counters and locks: 'changes' moves with every change to a shared
-- document (and is sent with NOTIFY alpr_changes); 'access-head' is
-- locked by every append to the hub's access log; 'next-plate-ordinal'
-- numbers the distinct plates in the order they were first stored.
CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO meta (key, value) VALUES
    ('changes', 0), ('access-head', 0), ('next-plate-ordinal', 0);

-- Nodes (reference table): what the hub knows of each; `id` is the short
-- key of every node-owned table.
CREATE SEQUENCE node_ids AS integer MINVALUE 0 START 0;
CREATE TABLE nodes (
    name text COLLATE "C" PRIMARY KEY,
    id integer NOT NULL UNIQUE,
    next_seq bigint NOT NULL DEFAULT 0,
    head bytea NOT NULL,
    last_contact bigint NOT NULL DEFAULT 0,
    reported_size bigint NOT NULL DEFAULT 0,
    serial text NOT NULL DEFAULT '',
    refusals bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    images bigint NOT NULL DEFAULT 0
);

-- Nodes' logs (distributed by node_id): canonical signed bytes of each
-- entry. Partitioned by month of capture (partitions `entries_YYYY_MM`
-- are made on demand before the commit that needs them); the default
-- partition holds only what no month covers (beyond year 9999).
CREATE TABLE entries (
    node_id integer NOT NULL,
    seq bigint NOT NULL,
    captured_at bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (node_id, seq, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE TABLE entries_default PARTITION OF entries DEFAULT;

-- The search rows of reads holding content (distributed by node_id),
-- partitioned like `entries`: by exact plate and time, and by place
-- (`cell`, the redb store's geo cell; -1: no coordinates) and time.
CREATE TABLE reads (
    node_id integer NOT NULL,
    seq bigint NOT NULL,
    captured_at bigint NOT NULL,
    plate text COLLATE "C" NOT NULL,
    cell integer NOT NULL,
    lat_e7 integer,
    lon_e7 integer,
    PRIMARY KEY (node_id, seq, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE TABLE reads_default PARTITION OF reads DEFAULT;
CREATE INDEX reads_plate_time ON reads (plate, captured_at, node_id, seq);
CREATE INDEX reads_cell_time ON reads (cell, captured_at, node_id, seq)
    INCLUDE (lat_e7, lon_e7);

-- Distinct plates of stored reads, numbered in the order first stored
-- (reference table).
CREATE TABLE plates (
    ordinal bigint PRIMARY KEY,
    plate text COLLATE "C" NOT NULL UNIQUE
);

-- Reads stored per hour of capture (reference table).
CREATE TABLE read_hours (
    hour bigint PRIMARY KEY,
    n bigint NOT NULL
);

-- Images by SHA-256 (distributed by hash).
CREATE TABLE images (
    hash bytea PRIMARY KEY,
    bytes bytea NOT NULL
);

-- The latest checked checkpoint of each node (distributed by node_id).
CREATE TABLE checkpoints (
    node_id integer PRIMARY KEY,
    bytes bytea NOT NULL
);

-- Every certificate a node has held (distributed by node_id).
CREATE TABLE node_certs (
    node_id integer NOT NULL,
    serial text COLLATE "C" NOT NULL,
    der bytea NOT NULL,
    first_seen bigint NOT NULL,
    effective_from bigint,
    PRIMARY KEY (node_id, serial)
);

-- Nodes' access entries by time (distributed by node_id).
CREATE TABLE node_access (
    at bigint NOT NULL,
    node_id integer NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (at, node_id, seq)
);

-- Alerts raised in nodes' logs (distributed by node_id): the stage they
-- reached (3 bytes), whether covert, and the node's disposition entries
-- (their seqs, 8 bytes big-endian each, in order).
CREATE TABLE alerts (
    node_id integer NOT NULL,
    seq bigint NOT NULL,
    progress bytea NOT NULL,
    covert boolean NOT NULL,
    dispositions bytea NOT NULL,
    PRIMARY KEY (node_id, seq)
);

-- Everything below is a reference table.

-- Refusals, newest last by (at, id); postcard records.
CREATE TABLE refusals (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    bytes bytea NOT NULL
);
CREATE INDEX refusals_at ON refusals (at, id);
CREATE TABLE source_refusals (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    bytes bytea NOT NULL
);
CREATE INDEX source_refusals_at ON source_refusals (at, id);

-- Revocations by certificate serial (postcard records).
CREATE TABLE revocations (
    serial text COLLATE "C" PRIMARY KEY,
    bytes bytea NOT NULL
);

-- The hub's own access log: canonical signed entries.
CREATE TABLE hub_access (
    seq bigint PRIMARY KEY,
    bytes bytea NOT NULL
);

-- The hub's signed policy, every version; the hash of the configuration
-- the latest one made from it was made from.
CREATE TABLE policy (
    version bigint PRIMARY KEY,
    encoded bytea NOT NULL
);
CREATE TABLE policy_seed (
    id smallint PRIMARY KEY CHECK (id = 1),
    hash bytea NOT NULL
);

-- What each node last said it holds.
CREATE TABLE node_policy (
    name text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE node_hotlists (
    name text COLLATE "C" PRIMARY KEY,
    held bytea NOT NULL
);

-- The automerge documents (one row each): legal holds, local hotlist
-- entries. A write merges into the stored one.
CREATE TABLE holds (
    id smallint PRIMARY KEY CHECK (id = 1),
    doc bytea NOT NULL
);
CREATE TABLE local_entries (
    id smallint PRIMARY KEY CHECK (id = 1),
    doc bytea NOT NULL
);

-- Accounts and sessions (postcard records).
CREATE TABLE users (
    username text COLLATE "C" PRIMARY KEY,
    bytes bytea NOT NULL
);
CREATE TABLE sessions (
    hash bytea PRIMARY KEY,
    bytes bytea NOT NULL
);

-- Past matches the hub found (numbered from 1) and disposition stages
-- recorded at the hub (numbered from 0 per alert); postcard records.
CREATE TABLE hub_alerts (
    n bigint PRIMARY KEY,
    bytes bytea NOT NULL
);
CREATE TABLE hub_dispositions (
    alert text COLLATE "C" NOT NULL,
    n bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (alert, n)
);

-- Bulk hotlist generations (the last few of each source) and their
-- import records (every one).
CREATE TABLE hotlist_gen (
    source text COLLATE "C" NOT NULL,
    number bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (source, number)
);
CREATE TABLE hotlist_import (
    source text COLLATE "C" NOT NULL,
    number bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (source, number)
);
"#;

/// Version 2: failed logins and lock-outs, shared by every hub process
/// (the throttle's rules live in the hub); the generation numbers of bulk
/// lists learned from nodes. Reference tables.
const LOGINS_AND_FLOORS: &str = r#"
-- One row per failed login and key (a username or a source address).
CREATE TABLE login_failures (
    id bigserial PRIMARY KEY,
    key text COLLATE "C" NOT NULL,
    at bigint NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, at);
CREATE INDEX login_failures_at ON login_failures (at, id);
-- Keys locked out, and until when.
CREATE TABLE login_locks (
    key text COLLATE "C" PRIMARY KEY,
    until bigint NOT NULL
);
-- The highest generation number of each bulk list a node showed the hub
-- signed (after a restore from a backup): the next import goes past it.
CREATE TABLE hotlist_floor (
    source text COLLATE "C" PRIMARY KEY,
    number bigint NOT NULL
);
"#;

/// The schema version this binary brings a database to.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
