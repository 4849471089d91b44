//! `hearth sessions`: the saved conversations (every chat turn, from the CLI and the
//! app, is in the one database): list them, show one, export one as Markdown or JSON.
//! A session is named by its id or any unique start of it, as `list` prints them.
//! Every subcommand only reads, so the database is opened read-only: it works when
//! the disk cannot be written, and changes nothing.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_store::{export_session, ExportFormat, Session, SessionId, Store, StoreError, LOCAL_USER};

#[derive(Args, Debug)]
pub struct SessionsArgs {
    #[command(subcommand)]
    command: Option<SessionsCommand>,
}

#[derive(Subcommand, Debug)]
enum SessionsCommand {
    /// The conversations, most recent first (the default).
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per session.
        #[arg(long)]
        json: bool,
    },
    /// One conversation as Markdown.
    Show { id: String },
    /// One conversation to a file (or stdout): Markdown to read, JSON with everything stored.
    Export {
        id: String,
        /// md or json.
        #[arg(long, default_value = "md")]
        format: String,
        /// The file to write (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn run(args: &SessionsArgs) -> Result<()> {
    let default = SessionsCommand::List { limit: 50, json: false };
    let command = args.command.as_ref().unwrap_or(&default);
    let store = match crate::db::open_for_reading() {
        Ok(store) => store,
        // No database yet: nothing was saved, which is what `list` says.
        Err(StoreError::Missing { path }) if matches!(command, SessionsCommand::List { json: false, .. }) => {
            println!(
                "No saved conversations in {} yet: `hearth chat` starts one.",
                path.display()
            );
            return Ok(());
        }
        Err(StoreError::Missing { .. }) if matches!(command, SessionsCommand::List { json: true, .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match command {
        SessionsCommand::List { limit, json } => list(&store, *limit, *json),
        SessionsCommand::Show { id } => {
            print!("{}", export(&store, id, ExportFormat::Markdown)?);
            Ok(())
        }
        SessionsCommand::Export { id, format, output } => {
            let format = ExportFormat::parse(format)
                .with_context(|| format!("{format:?} is not an export format: use md or json"))?;
            let text = export(&store, id, format)?;
            match output {
                None => print!("{text}"),
                Some(path) => {
                    write_whole(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(())
        }
    }
}

fn list(store: &Store, limit: usize, json: bool) -> Result<()> {
    let sessions = store.list_sessions(LOCAL_USER, limit)?;
    if json {
        for s in &sessions {
            println!("{}", serde_json::to_string(s)?);
        }
        return Ok(());
    }
    if sessions.is_empty() {
        println!(
            "No saved conversations in {} yet: `hearth chat` starts one.",
            store.path().display()
        );
        return Ok(());
    }
    println!("{:<36}  {:>8}  {:<16}  TITLE", "ID", "MESSAGES", "UPDATED (UTC)");
    for s in &sessions {
        println!(
            "{:<36}  {:>8}  {:<16}  {}",
            s.id,
            s.message_count,
            utc_minute(s.updated_at),
            s.title
        );
    }
    Ok(())
}

/// The session `given` names: its id, or the one session whose id starts with it.
fn find(store: &Store, given: &str) -> Result<Session> {
    if let Some(session) = store.get_session(&SessionId::from(given))? {
        return Ok(session);
    }
    let matches: Vec<Session> = store
        .list_sessions(LOCAL_USER, usize::MAX)?
        .into_iter()
        .filter(|s| s.id.as_str().starts_with(given))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().context("one match")?),
        0 => bail!("no saved conversation has the id {given:?}: `hearth sessions list` shows them"),
        n => bail!("{n} conversations have ids starting with {given:?}: give more of the id"),
    }
}

fn export(store: &Store, given: &str, format: ExportFormat) -> Result<String> {
    let session = find(store, given)?;
    let whole = store
        .retrieve_session(&session.id)?
        .with_context(|| format!("the conversation {} was deleted meanwhile", session.id))?;
    Ok(export_session(&whole, format))
}

/// Written to a temporary file beside `path`, then renamed: never half a file.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// "2026-12-02 10:41" from Unix milliseconds (UTC; no time-zone database needed).
fn utc_minute(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_read_as_calendar_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_796_121_660_000), "2026-12-01 10:41");
    }
}
