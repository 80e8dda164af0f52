//! The import file of the `ingest` scenario: the generated catalog ([`catalog::item`]) as
//! JSON lines, one [`CatalogChange`](gatehouse_events::catalog::CatalogChange) each, written
//! once into a directory of its own, which goes when the [`ItemsFile`] is dropped.
//!
//! An import's id hashes the file's path (see `cli::catalog::import`), so the file is renamed
//! before every repetition: the import then sends every line again under new message ids
//! (nothing dedupes) and finds no saved progress to resume from.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::io::AsyncBufReadExt;

use crate::catalog;
use gatehouse::cli::catalog::SIDE_FILE_SUFFIX;

/// The JSON-lines file of the generated items.
pub struct ItemsFile {
    dir: PathBuf,
    path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

impl ItemsFile {
    /// Writes items `0..items` into `items-0.jsonl` of a fresh directory `dir`.
    pub async fn write(dir: PathBuf, items: u64) -> anyhow::Result<ItemsFile> {
        std::fs::create_dir_all(&dir)?;
        let dir = std::fs::canonicalize(&dir)?;
        let mut file = ItemsFile {
            path: dir.join("items-0.jsonl"),
            dir,
            bytes: 0,
        };
        let path = file.path.clone();
        file.bytes = tokio::task::spawn_blocking(move || write_items(&path, items)).await??;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file for repetition `rep` (a new import id), dropping the side file with
    /// the previous name's progress.
    pub async fn rename_for(&mut self, rep: usize) -> anyhow::Result<()> {
        let next = self.dir.join(format!("items-{rep}.jsonl"));
        if next == self.path {
            return Ok(());
        }
        tokio::fs::rename(&self.path, &next).await?;
        let mut side = self.path.clone().into_os_string();
        side.push(SIDE_FILE_SUFFIX);
        match tokio::fs::remove_file(side).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        self.path = next;
        Ok(())
    }

    /// Its lines, from the first.
    pub async fn lines(&self) -> anyhow::Result<Lines> {
        let file = tokio::fs::File::open(&self.path).await?;
        Ok(Lines {
            reader: tokio::io::BufReader::with_capacity(256 * 1024, file),
            buf: Vec::new(),
        })
    }
}

impl Drop for ItemsFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bench: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Writes one line per item; returns the bytes written.
fn write_items(path: &Path, items: u64) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for i in 0..items {
        serde_json::to_writer(&mut out, &catalog::item(i).change())?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The lines of an [`ItemsFile`], one at a time.
pub struct Lines {
    reader: tokio::io::BufReader<tokio::fs::File>,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line without its line end; `None` at the end of the file.
    pub async fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf).await? == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf.trim_ascii_end()))
    }
}
