//! `hearth db`: look after the database.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use hearth_store::Store;

#[derive(Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Size, row counts, schema version, WAL size (JSON).
    Stats,
    /// Copy the live database to a file with SQLite's online backup (safe while Hearth runs).
    Backup { dest: PathBuf },
    /// Run SQLite's integrity check; exits non-zero when the database is damaged.
    Check,
}

pub fn run(args: &DbArgs) -> Result<()> {
    let store = Store::open_default()?;
    match &args.command {
        DbCommand::Stats => println!("{}", serde_json::to_string_pretty(&store.stats()?)?),
        DbCommand::Backup { dest } => println!("{}", serde_json::to_string(&store.backup_to(dest)?)?),
        DbCommand::Check => {
            let report = store.integrity_check()?;
            println!("{}", serde_json::to_string(&report)?);
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
