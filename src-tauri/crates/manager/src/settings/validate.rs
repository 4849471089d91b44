//! Every setting checked at once, each problem naming its key (or variable), so a typo
//! is reported at start instead of surfacing later as a confusing connection error.
//! Each value is checked by its entry in the settings table ([`super::schema`]); what
//! spans settings (the chosen backend configured, no fallback twice) is checked here.

use super::schema::{self, fields};
use super::{Problem, Settings};

impl Settings {
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            })
        };
        self.check_backend_choice(&mut problem);
        self.check_values(&mut problem);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Each value the file holds against its entry in the table (a section that is
    /// absent, or a value absent for automatic, has nothing to check).
    fn check_values(&self, problem: &mut impl FnMut(&str, String)) {
        let table = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table,
            Ok(_) => return,
            Err(e) => return problem("(file)", e.to_string()),
        };
        for field in fields().filter(|f| !f.key.starts_with("ui.")) {
            if let Some(value) = schema::lookup(&table, field.key) {
                if let Err(message) = schema::check(field, value) {
                    problem(field.key, message);
                }
            }
        }
    }

    /// The active backend and the fallbacks: each configured, none listed twice.
    fn check_backend_choice(&self, problem: &mut impl FnMut(&str, String)) {
        if !self.is_configured(self.active) {
            problem(
                "active",
                format!(
                    "{} is chosen but has no [{}] section with its url",
                    self.active, self.active
                ),
            );
        }
        for (i, kind) in self.fallback.iter().enumerate() {
            if !self.is_configured(*kind) {
                problem(
                    "fallback",
                    format!("{kind} is listed but has no [{kind}] section with its url"),
                );
            }
            if self.fallback[..i].contains(kind) {
                problem("fallback", format!("{kind} is listed twice"));
            }
        }
    }
}
