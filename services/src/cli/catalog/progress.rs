//! An import's identity and progress: the import id (from the file's canonical path, size and
//! modification time), the side file `<file>.gatehouse-import` holding the line up to which
//! the import is settled, and the progress bar.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::import::ImportError;

/// Appended to the file's name for its side file.
pub const SIDE_FILE_SUFFIX: &str = ".gatehouse-import";

/// The file being imported.
pub(super) struct ImportFile {
    /// Canonical.
    pub path: PathBuf,
    pub import_id: String,
    side: PathBuf,
}

/// What the side file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    import_id: String,
    file: String,
    /// Every line up to this one is acked or reported.
    line: u64,
    /// The whole file is.
    complete: bool,
}

impl ImportFile {
    pub async fn open(path: &Path) -> Result<Self, ImportError> {
        let unreadable = |source| ImportError::Read {
            path: path.display().to_string(),
            source,
        };
        let path = tokio::fs::canonicalize(path).await.map_err(unreadable)?;
        let meta = tokio::fs::metadata(&path).await.map_err(unreadable)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let import_id = import_id(&path, meta.len(), mtime);
        let mut side = path.clone().into_os_string();
        side.push(SIDE_FILE_SUFFIX);
        Ok(Self {
            path,
            import_id,
            side: side.into(),
        })
    }

    /// The line to start after: the saved progress of this very file, else 0. With `require`,
    /// no such progress is an error.
    pub async fn resume_point(&self, require: bool) -> Result<u64, ImportError> {
        let nothing = |reason: String| {
            if require {
                Err(ImportError::NothingToResume {
                    path: self.path.display().to_string(),
                    reason,
                })
            } else {
                Ok(0)
            }
        };
        let text = match tokio::fs::read(&self.side).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return nothing(format!("no {}", self.side.display()))
            }
            Err(source) => {
                return Err(ImportError::Read {
                    path: self.side.display().to_string(),
                    source,
                })
            }
        };
        match serde_json::from_slice::<Saved>(&text) {
            Ok(saved) if saved.import_id == self.import_id => Ok(saved.line),
            Ok(_) => nothing("the file changed since that progress was saved".into()),
            Err(e) => nothing(format!("{} is unreadable: {e}", self.side.display())),
        }
    }

    /// Saves the progress: written aside, then renamed over the side file.
    pub async fn save(&self, line: u64, complete: bool) -> Result<(), ImportError> {
        let saved = Saved {
            import_id: self.import_id.clone(),
            file: self.path.display().to_string(),
            line,
            complete,
        };
        let mut tmp = self.side.clone().into_os_string();
        tmp.push(".tmp");
        let unwritable = |source| ImportError::SaveProgress {
            path: self.side.display().to_string(),
            source,
        };
        let text = serde_json::to_vec(&saved).unwrap_or_default();
        tokio::fs::write(&tmp, text).await.map_err(unwritable)?;
        tokio::fs::rename(&tmp, &self.side)
            .await
            .map_err(unwritable)
    }
}

/// 16 hex digits of SHA-256 over the canonical path, the size and the modification time.
fn import_id(path: &Path, size: u64, mtime_nanos: u128) -> String {
    let mut hash = Sha256::new();
    hash.update(path.as_os_str().as_encoded_bytes());
    hash.update(format!("\n{size}\n{mtime_nanos}").as_bytes());
    hex::encode(&hash.finalize()[..8])
}

/// The progress bar on stderr, if wanted and stderr is a terminal.
pub(super) struct Bar(Option<ProgressBar>);

impl Bar {
    pub async fn new(wanted: bool, file: &ImportFile, start: u64) -> Self {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let path = file.path.clone();
        let lines = tokio::task::spawn_blocking(move || count_lines(&path))
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        let bar = ProgressBar::with_draw_target(Some(lines), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{wide_bar} {human_pos}/{human_len} lines  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_position(start);
        bar.reset_eta();
        Bar(Some(bar))
    }

    pub fn set(&self, line: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(line);
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<F: FnOnce()>(&self, f: F) {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Lines in the file (a last line without a newline counts).
fn count_lines(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Some(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_id_changes_with_the_file_version() {
        let path = Path::new("/data/items.jsonl");
        let id = import_id(path, 10, 1);
        assert_eq!(id.len(), 16);
        assert_eq!(id, import_id(path, 10, 1));
        assert_ne!(id, import_id(path, 11, 1));
        assert_ne!(id, import_id(path, 10, 2));
        assert_ne!(id, import_id(Path::new("/data/other.jsonl"), 10, 1));
    }
}
