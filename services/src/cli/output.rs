//! How the CLI prints: readable tables by default, JSON with `--json`.
//!
//! Everything goes through [`line`] (the [`outln!`](crate::outln) macro): a closed stdout
//! (`gatehouse ... | head -1`) ends the process quietly with exit code 0, as the reader has
//! what it wanted, instead of a panic in `println!`.

use std::io::Write;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

/// `println!` for the CLI: see [`line`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout. When the reader is gone (EPIPE) the process exits at once with
/// code 0; any other write failure exits with code 2 after a message on stderr.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(2)
        }
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints one JSON document per line (for event streams).
pub fn json_lines<T: Serialize>(values: &[T]) {
    for v in values {
        crate::outln!("{}", serde_json::to_string(v).unwrap_or_default());
    }
}

/// A table with these column headers.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(headers.to_vec());
    t
}

/// `-` for a missing value.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Shortens `s` to `max` characters for a table cell.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!(
            "{}…",
            s.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    }
}
