//! Schema migrations: the numbered SQL files of the repository's `migrations/`
//! directory, compiled into the binary, applied in order on open, each in its
//! own `BEGIN IMMEDIATE` transaction together with the `PRAGMA user_version`
//! that records it. A crash mid-migration leaves the previous version intact.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};

/// One numbered migration file.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order; `version` is the `user_version` after it ran.
/// Adding a migration: create `migrations/000N_name.sql`, append it here, run
/// the tests (`tests/migrations.rs` checks this list against the directory and
/// the resulting schema against `tests/expected_schema.sql`).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../../../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_model_evals.sql",
        sql: include_str!("../../../../migrations/0002_model_evals.sql"),
    },
    Migration {
        version: 3,
        name: "0003_drop_document_cache.sql",
        sql: include_str!("../../../../migrations/0003_drop_document_cache.sql"),
    },
];

/// The schema version (`PRAGMA user_version`) this build creates and
/// understands. A database with a higher version is refused untouched.
pub const SCHEMA_VERSION: i64 = 3;

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// File names of the embedded migrations, in order (for checks and `--version`
/// style reports).
pub fn migration_names() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|m| m.name).collect()
}

/// Refuses a database written by a newer Hearth.
pub(crate) fn check_not_newer(path: &Path, found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Applies the pending migrations. The version is re-read inside each
/// transaction, so two processes opening the same new database at once apply
/// each migration exactly once.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    for migration in MIGRATIONS {
        let applied = (|| -> Result<bool> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            check_not_newer(path, version)?;
            if version >= migration.version {
                return Ok(false);
            }
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", migration.version)?;
            tx.commit()?;
            Ok(true)
        })()
        .map_err(|e| e.at(path))?;
        if applied {
            tracing::info!(path = %path.display(), migration = migration.name, "applied migration");
        }
    }
    Ok(())
}
