//! The schema, created and upgraded by the store itself.
//!
//! Invariants:
//!
//! 1. Migrations are numbered from 1 and never edited once released: a
//!    change is a new migration appended to [`MIGRATIONS`].
//! 2. `harbor_schema_migrations` holds one row per applied migration; a
//!    migration and its row commit in one transaction, so a crash leaves
//!    either both or neither.
//! 3. Every migration run holds the transaction-scoped advisory lock
//!    [`MIGRATION_LOCK`] from before it reads the applied versions until it
//!    commits, so replicas starting at once apply each migration exactly
//!    once: the second waits, then finds nothing left to do.

use postgres::Client;

use crate::StoreError;

/// The advisory lock key of migration runs (`harbor01` in ASCII).
pub(crate) const MIGRATION_LOCK: i64 = 0x6861_7262_6f72_3031;

/// `(version, name, sql)`, in order (invariant 1).
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "replicas and jobs",
    r#"
CREATE TABLE harbor_replicas (
    id               text PRIMARY KEY,
    incarnation      uuid NOT NULL,
    address          text,
    started_at       timestamptz NOT NULL,
    heartbeat_at     timestamptz NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    stopped_at       timestamptz
);
CREATE TABLE harbor_jobs (
    id                  uuid PRIMARY KEY,
    replica             text NOT NULL,
    status              text NOT NULL CHECK (status IN
        ('pending', 'running', 'completed', 'failed', 'cancelled', 'abandoned', 'lost')),
    error               text,
    progress_done       bigint,
    progress_total      bigint,
    progress_message    text,
    submitted_at        timestamptz NOT NULL,
    started_at          timestamptz,
    finished_at         timestamptz,
    cancel_requested_at timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- a replica's unfinished jobs: cancel polls, lost marking
CREATE INDEX harbor_jobs_unfinished ON harbor_jobs (replica)
    WHERE status IN ('pending', 'running');
-- retention
CREATE INDEX harbor_jobs_finished_at ON harbor_jobs (finished_at)
    WHERE finished_at IS NOT NULL;
"#,
)];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration the database lacks; returns how many it applied.
/// Idempotent and safe to run from several processes at once (invariant 3).
pub(crate) fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    let mut tx = client.transaction().map_err(StoreError::from_pg)?;
    // Keeps invariant 3: held until commit or rollback.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(StoreError::from_pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS harbor_schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(StoreError::from_pg)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM harbor_schema_migrations",
            &[],
        )
        .map_err(StoreError::from_pg)?
        .get(0);
    if current > SCHEMA_VERSION {
        log::warn!(
            "schema version {current} is newer than this build's {SCHEMA_VERSION}; \
             running on it (migrations only add)"
        );
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        // Keeps invariant 2: the migration and its row in one transaction.
        tx.batch_execute(sql).map_err(StoreError::from_pg)?;
        tx.execute(
            "INSERT INTO harbor_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .map_err(StoreError::from_pg)?;
        log::info!("applied schema migration {version}: {name}");
        applied += 1;
    }
    tx.commit().map_err(StoreError::from_pg)?;
    Ok(applied)
}
