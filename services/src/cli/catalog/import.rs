//! `gatehouse catalog import <file.jsonl>`: publishes a JSON-lines file of
//! [`CatalogChange`](gatehouse_events::catalog::CatalogChange)s onto the catalog stream, one
//! message per line on `<ns>.catalog.items.<id>`, in file order.
//!
//! Every line is checked first; a bad one is reported by number and skipped, the rest go on.
//! Publishes are pipelined (up to `in_flight` PubAcks awaited at once, see `publish`) and carry
//! `Nats-Msg-Id = <import-id>:<line>`, the import id being derived from the file's canonical
//! path, size and modification time: the same file sent twice within the stream's dedupe window
//! is stored once. Progress (the line up to which every line is acked or reported) is saved in
//! `<file>.gatehouse-import` (see `progress`); the next run of the same file starts after it.

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use super::progress::{Bar, ImportFile};
use super::publish::Publisher;

/// Publishes awaiting their PubAck at once, by default.
pub const DEFAULT_IN_FLIGHT: usize = 2_000;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Publishes awaiting their PubAck at once; the progress is saved every this many lines.
    pub in_flight: usize,
    /// Fail unless the side file holds progress of this very file (`--resume`). Without it,
    /// such progress is used when present, and the import starts at line 1 otherwise.
    pub require_resume: bool,
    /// Draw a progress bar on stderr.
    pub progress_bar: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            in_flight: DEFAULT_IN_FLIGHT,
            require_resume: false,
            progress_bar: false,
        }
    }
}

/// A line that is no valid catalog change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadLine {
    /// 1-based.
    pub line: u64,
    pub error: String,
}

/// What one run of an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub import_id: String,
    /// This run started after this line (0: at the beginning).
    pub resumed_after: u64,
    /// Every line up to this one is acked or reported: the saved progress.
    pub settled_line: u64,
    /// Lines the stream stored in this run.
    pub published: u64,
    /// Lines the stream already held, from an earlier run (or from an attempt of this one whose
    /// PubAck was lost): not stored again.
    pub duplicates: u64,
    /// Lines sent once more after a retried earlier line of the same item, to keep file order.
    pub republished: u64,
    pub bad_lines: u64,
    /// False when the run stopped before the end of the file: run it again to resume.
    pub complete: bool,
}

/// Why an import stopped early (its progress up to then is saved).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot save the import's progress to {path}")]
    SaveProgress {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nothing to resume for {path}: {reason}")]
    NothingToResume { path: String, reason: String },
    #[error(
        "line {line}: could not publish after {tries} tries; run the import again to resume \
         (Gatehouse must be running: its catalog projector creates the stream)"
    )]
    Publish {
        line: u64,
        tries: u32,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// Imports `path` into namespace `ns`'s catalog stream, calling `on_bad` for each bad line.
/// Stops early, its progress saved, once `stop` is cancelled.
pub async fn import(
    client: &async_nats::Client,
    ns: &str,
    path: &Path,
    options: &ImportOptions,
    stop: &CancellationToken,
    on_bad: &mut (dyn FnMut(&BadLine) + Send),
) -> Result<ImportReport, ImportError> {
    let file = ImportFile::open(path).await?;
    let resumed_after = file.resume_point(options.require_resume).await?;
    // No look at the stream first: Gatehouse's catalog projector creates it, and a host
    // system's user (a client account) has no JetStream API, only the catalog subjects.
    let mut run = Run {
        bar: Bar::new(options.progress_bar, &file, resumed_after).await,
        publisher: Publisher::new(client, ns, &file.import_id, options.in_flight),
        report: ImportReport {
            file: file.path.display().to_string(),
            import_id: file.import_id.clone(),
            resumed_after,
            settled_line: resumed_after,
            ..ImportReport::default()
        },
        save_every: options.in_flight.max(1) as u64,
        saved: resumed_after,
        file,
    };
    let outcome = run.lines(stop, on_bad).await;
    run.bar.finish();
    run.report.complete = outcome?;
    Ok(run.report)
}

/// One run over the file.
struct Run {
    file: ImportFile,
    publisher: Publisher,
    report: ImportReport,
    bar: Bar,
    save_every: u64,
    saved: u64,
}

impl Run {
    /// Reads, checks and publishes every line after the resume point, then awaits every ack
    /// and saves the progress; false if stopped early.
    async fn lines(
        &mut self,
        stop: &CancellationToken,
        on_bad: &mut (dyn FnMut(&BadLine) + Send),
    ) -> Result<bool, ImportError> {
        let path = self.report.file.clone();
        let unreadable = |source| ImportError::Read {
            path: path.clone(),
            source,
        };
        let file = tokio::fs::File::open(&self.file.path)
            .await
            .map_err(unreadable)?;
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        let mut buf = Vec::new();
        let mut complete = true;
        loop {
            buf.clear();
            if reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(unreadable)?
                == 0
            {
                break;
            }
            let line = self.publisher.lines_read + 1;
            if line > self.report.resumed_after && stop.is_cancelled() {
                complete = false;
                break;
            }
            self.publisher.lines_read = line;
            let text = buf.trim_ascii();
            if line <= self.report.resumed_after || text.is_empty() {
                continue;
            }
            match check(text, self.publisher.max_payload) {
                Ok(item_id) => {
                    let payload = Bytes::copy_from_slice(text);
                    self.publisher
                        .send(line, item_id, payload, &mut self.report)
                        .await?;
                }
                Err(error) => {
                    self.report.bad_lines += 1;
                    let bad = BadLine { line, error };
                    self.bar.suspend(|| on_bad(&bad));
                }
            }
            self.progress().await?;
        }
        self.publisher.drain(&mut self.report).await?;
        self.report.settled_line = self.publisher.settled_line();
        self.file.save(self.report.settled_line, complete).await?;
        Ok(complete)
    }

    /// Moves the bar, and saves the progress every `save_every` settled lines.
    async fn progress(&mut self) -> Result<(), ImportError> {
        let settled = self.publisher.settled_line();
        self.bar.set(settled);
        if settled >= self.saved + self.save_every {
            self.file.save(settled, false).await?;
            self.saved = settled;
            self.report.settled_line = settled;
        }
        Ok(())
    }
}

/// The item id of `line` if it is a change the catalog projector will apply (read as it reads
/// it) and it fits in a message.
fn check(line: &[u8], max_payload: usize) -> Result<String, String> {
    let id = gatehouse_projections::catalog::check_change(line)?;
    if line.len() > max_payload {
        return Err(format!(
            "{} bytes: longer than the server's max_payload allows ({max_payload} bytes)",
            line.len()
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_line_yields_its_item_id() {
        let line = br#"{"op":"upsert","id":"m-1","status":"ready","attributes":{}}"#;
        assert_eq!(check(line, 1_000), Ok("m-1".to_owned()));
    }

    #[test]
    fn a_line_that_is_no_change_says_why() {
        let error = check(br#"{"op":"upsert","id":"m-1"}"#, 1_000).unwrap_err();
        assert!(error.starts_with("not a catalog change:"), "{error}");
        let error = check(br#"{"op":"delete","id":"a.b"}"#, 1_000).unwrap_err();
        assert!(error.starts_with("id:"), "{error}");
    }

    #[test]
    fn a_line_the_projector_would_reject_is_bad_before_it_is_published() {
        let line = br#"{"op":"upsert","id":"m-1","status":"ready","attributes":{"k":"a\u0000b"}}"#;
        let error = check(line, 1_000).unwrap_err();
        assert!(error.contains("attributes.k holds a NUL"), "{error}");
        let escaped = br#"{"op":"delete","id":"m\u002d1"}"#;
        assert_eq!(check(escaped, 1_000), Ok("m-1".to_owned()));
    }

    #[test]
    fn a_line_too_long_for_one_message_is_bad() {
        let line = br#"{"op":"delete","id":"m-1"}"#;
        assert!(check(line, 10).unwrap_err().contains("max_payload"));
    }
}
