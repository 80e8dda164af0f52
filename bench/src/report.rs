//! A finished run: printed as a table (figure, median, min, max, limit, ratio, target,
//! verdict) and written as JSON with the machine, the versions and the parameters.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::figures::{Figure, Verdict};
use super::machine::{Machine, Versions};
use gatehouse::cli::output;

/// Everything one run measured, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub about: &'static str,
    pub quick: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub machine: Machine,
    pub versions: Versions,
    /// The resolved parameters (repetitions, duration, concurrency, ...).
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub figures: Vec<Figure>,
}

impl Report {
    /// Prints the table to stdout.
    pub fn print(&self) {
        let mut table = output::table(&[
            "figure", "unit", "median", "min", "max", "limit", "ratio", "target", "verdict",
        ]);
        for f in &self.figures {
            table.add_row(vec![
                f.name.to_owned(),
                f.unit.to_owned(),
                number(f.median),
                number(f.min),
                number(f.max),
                f.limit.map_or_else(
                    || "-".into(),
                    |l| format!("{} ({l})", number(f.limit_median)),
                ),
                f.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                f.target_text(),
                verdict(f),
            ]);
        }
        let reps = self.parameters.get("reps").cloned().unwrap_or_default();
        println!(
            "gatehouse bench {} — {} ({} repetitions{}; {} × {}, {} MiB)",
            self.scenario,
            self.about,
            reps,
            if self.quick { ", quick" } else { "" },
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_mib,
        );
        println!("{table}");
        for f in &self.figures {
            if let Some(why) = &f.unavailable {
                println!("{}: {why}", f.name);
            }
        }
    }

    /// Writes the JSON to `out`, or to `bench/results/<scenario>-<timestamp>.json`.
    pub fn write(&self, out: Option<&Path>) -> anyhow::Result<PathBuf> {
        let path = out.map_or_else(|| self.default_path(), Path::to_path_buf);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    fn default_path(&self) -> PathBuf {
        let stamp = self.started_at.format("%Y%m%dT%H%M%SZ");
        PathBuf::from("bench/results").join(format!("{}-{stamp}.json", self.scenario))
    }
}

fn verdict(f: &Figure) -> String {
    match f.verdict {
        Verdict::Met => "met".into(),
        Verdict::Missed => "MISSED".into(),
        Verdict::None => "-".into(),
        Verdict::Unavailable => "n/a".into(),
    }
}

/// A figure for a table cell: three significant digits, no exponent.
fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 || v == 0.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_keep_about_three_significant_digits() {
        assert_eq!(number(Some(12345.6)), "12346");
        assert_eq!(number(Some(45.67)), "45.7");
        assert_eq!(number(Some(4.567)), "4.57");
        assert_eq!(number(Some(0.4567)), "0.457");
        assert_eq!(number(None), "-");
    }
}
