//! `hearth db`: look after the database. Stats and backups open it read-only, so they
//! work when its disk cannot be written or the file is damaged (when a backup is most
//! needed) and change nothing.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use hearth_store::{default_db_path, Store, SCHEMA_VERSION};

#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Size, row counts, schema version, WAL size (JSON).
    Stats,
    /// Copy the live database to a file with SQLite's online backup (safe while Hearth runs, and on a read-only disk).
    Backup { dest: PathBuf },
    /// Run SQLite's integrity check; exits non-zero when the database is damaged.
    Check,
}

pub fn run(args: &DbArgs) -> Result<()> {
    match &args.command {
        DbCommand::Stats => println!("{}", serde_json::to_string_pretty(&open_for_reading()?.stats()?)?),
        DbCommand::Backup { dest } => println!("{}", serde_json::to_string(&open_for_reading()?.backup_to(dest)?)?),
        DbCommand::Check => {
            let store = open_for_checking()?;
            let report = store.integrity_check()?;
            println!("{}", serde_json::to_string(&report)?);
            for skipped in &report.skipped {
                eprintln!("note: not checked: {skipped}");
            }
            if !report.ok {
                anyhow::bail!(
                    "{} is damaged: back up what you can with `hearth db backup FILE`, then move the file aside",
                    store.path().display()
                );
            }
        }
    }
    Ok(())
}

/// The database for a command that only reads, opened read-only (see
/// [`Store::open_read_only`]). An older schema is read as it is, and said so.
pub fn open_for_reading() -> hearth_store::Result<Store> {
    let store = Store::open_read_only(default_db_path())?;
    let found = store.schema_version();
    if found < SCHEMA_VERSION {
        eprintln!(
            "note: {} has schema version {found}, older than this Hearth's {SCHEMA_VERSION}; it is read as it is \
             (the next `hearth chat` upgrades it)",
            store.path().display()
        );
    }
    Ok(store)
}

/// Writable where possible: only then can the search index be compared with the
/// messages (SQLite runs that check as a write statement). A database that cannot
/// be written, or that opening refuses as damaged, is checked read-only.
fn open_for_checking() -> Result<Store> {
    match Store::open_default() {
        Ok(store) => Ok(store),
        Err(e) if e.is_history_disabling() => {
            eprintln!("note: checking read-only: {e}");
            Ok(open_for_reading()?)
        }
        Err(e) => Err(e.into()),
    }
}
