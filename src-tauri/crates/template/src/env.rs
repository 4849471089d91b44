//! The Jinja environment a chat template runs in: Hugging Face's whitespace rules, the
//! Python methods and the functions real templates call, and the limits on its work.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};

use crate::json::to_python_json;
use crate::limits::Limits;

/// How deep macros, includes and nested loops may go (minijinja's default is 500; a
/// chat template needs a handful).
const RECURSION_LIMIT: usize = 64;

/// An environment with the options Hugging Face's `apply_chat_template` and llama-server
/// use (`trim_blocks`, `lstrip_blocks`, no kept trailing newline; undefined values
/// print as nothing, as Jinja2's default `Undefined`) and no loader at all.
pub(crate) fn environment(limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .unwrap_or_default();
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_str);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

/// Printed values as Python's `str()` writes them where that differs: `True`,
/// `False`, `None` (minijinja writes `true`, `false` and `none`).
fn python_str(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let word = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(word).map_err(Error::from)
}

/// What `raise_exception` carries, to tell a template's own refusal from a failure.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// The message of a template's `raise_exception`, if `e` is one.
pub(crate) fn raised(e: &Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(Raised(message)) = err.downcast_ref::<Raised>() {
            return Some(message.clone());
        }
        source = err.source();
    }
    None
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, "raise_exception").with_source(Raised(message)))
}

/// `strftime_now(format)`: the local time in C's strftime format (templates write
/// "Today Date: 26 Jul 2024" into the system prompt with it).
fn strftime_now(format: &str) -> Result<String, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: {format:?} is not a strftime format"),
        ));
    }
    Ok(chrono::Local::now().format_with_items(items.into_iter()).to_string())
}

/// `value|tojson(indent=None, ensure_ascii=False, separators=None, sort_keys=False)`
/// as Python's `json.dumps` writes it (what Hugging Face's own `tojson` filter calls):
/// `", "` and `": "` between items, insertion order, non-ASCII kept. minijinja's
/// built-in writes compact JSON and escapes HTML characters, which would change the
/// tokens a tool's schema becomes.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(usize::try_from(n.max(0)).unwrap_or(0))),
            (None, Some(s)) => Some(s.to_owned()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a number or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let item = v.get_item_by_index(0).ok().and_then(|s| s.as_str().map(str::to_owned));
            let key = v.get_item_by_index(1).ok().and_then(|s| s.as_str().map(str::to_owned));
            match (item, key) {
                (Some(item), Some(key)) => (item, key),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
        _ => (if indent.is_some() { "," } else { ", " }.to_owned(), ": ".to_owned()),
    };
    let style = crate::json::Style {
        indent,
        item_sep,
        key_sep,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    to_python_json(value, &style).map(Value::from_safe_string)
}
