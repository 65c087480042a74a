//! The durable side of the cursor contract: [`PosInbox`] and its file implementation.
//!
//! [`FileInbox`] keeps everything in one folder:
//!
//! - `batches.jsonl` — append-only, one `{"seq":N,"batch":{...}}` line per stored batch,
//!   `fsync`ed before [`PosInbox::store_batch`] returns. A torn last line (a crash during the
//!   write) is cut off when the inbox opens; any other unreadable line is an error, never
//!   skipped.
//! - `cursors/<connector>.<feed>.json` — the committed cursor, written to a temporary file,
//!   `fsync`ed, renamed over the old one and the folder `fsync`ed, so a reader sees the old
//!   cursor or the new one, never half of either.
//!
//! The SQLite / PostgreSQL storage of a later issue implements the same trait (a batch row
//! and a cursor row, the cursor update in its own transaction after the batch insert).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{BatchId, BoxFuture, ConnectorId, Feed, PosBatch, PosCursor};

/// Whether a batch was written now or was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StoreOutcome {
    Stored {
        seq: u64,
    },
    /// Same [`BatchId`] stored before (a re-delivery after a crash): nothing written.
    AlreadyStored {
        seq: u64,
    },
}

impl StoreOutcome {
    pub fn seq(self) -> u64 {
        match self {
            StoreOutcome::Stored { seq } | StoreOutcome::AlreadyStored { seq } => seq,
        }
    }
}

/// A batch as the inbox holds it, with its position in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBatch {
    pub seq: u64,
    pub batch: PosBatch,
}

/// Inbox failures. I/O failures are worth retrying; the others need a person.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "{path} line {line} is unreadable: {message} (the inbox will not skip it; restore it from a backup or move it aside)"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("cursor not committed: batch {batch} is not stored (store the batch first)")]
    BatchNotStored { batch: BatchId },
    #[error("batch {batch} does not match its id (it was altered after it was built)")]
    IdMismatch { batch: BatchId },
    #[error("inbox: {message}")]
    Internal { message: String },
}

impl InboxError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, InboxError::Io { .. })
    }

    fn io(path: &Path, err: &std::io::Error) -> Self {
        InboxError::Io {
            path: path.to_owned(),
            message: err.to_string(),
        }
    }
}

/// Durable storage for POS batches and the cursors that follow them.
pub trait PosInbox: Send + Sync + fmt::Debug {
    /// Store `batch` durably (returns after the write is flushed to disk). A batch whose id
    /// is already stored is not written again.
    fn store_batch<'a>(
        &'a self,
        batch: &'a PosBatch,
    ) -> BoxFuture<'a, Result<StoreOutcome, InboxError>>;

    /// Commit `cursor` as the position of `connector`'s `feed`, after batch `after`.
    /// Refuses ([`InboxError::BatchNotStored`]) unless `after` is stored.
    fn commit_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
        cursor: &'a PosCursor,
        after: &'a BatchId,
    ) -> BoxFuture<'a, Result<(), InboxError>>;

    /// The committed cursor, or `None` before the first commit.
    fn load_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
    ) -> BoxFuture<'a, Result<Option<PosCursor>, InboxError>>;
}

/// The committed cursor file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CursorRecord {
    connector: ConnectorId,
    feed: Feed,
    cursor: PosCursor,
    after_batch: BatchId,
    after_seq: u64,
}

#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    batch: &'a PosBatch,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    seen: HashMap<BatchId, u64>,
    next_seq: u64,
}

/// A [`PosInbox`] in a folder: append-only JSON lines with `fsync`, cursors by atomic rename.
#[derive(Debug, Clone)]
pub struct FileInbox {
    inner: Arc<Mutex<Inner>>,
}

impl FileInbox {
    /// Open (or create) the inbox in `dir`, cutting off a torn last line if a crash left one.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, InboxError> {
        let dir = dir.into();
        let cursors = dir.join("cursors");
        fs::create_dir_all(&cursors).map_err(|e| InboxError::io(&cursors, &e))?;
        let log_path = dir.join("batches.jsonl");
        let (seen, next_seq, good_len) = scan_log(&log_path)?;
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| InboxError::io(&log_path, &e))?;
        let len = log
            .metadata()
            .map_err(|e| InboxError::io(&log_path, &e))?
            .len();
        if len > good_len {
            log.set_len(good_len)
                .and_then(|()| log.sync_all())
                .map_err(|e| InboxError::io(&log_path, &e))?;
        }
        sync_dir(&dir)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                log_path,
                log,
                seen,
                next_seq,
            })),
        })
    }

    /// Every stored batch in the order stored (read back from disk).
    pub fn batches(&self) -> Result<Vec<StoredBatch>, InboxError> {
        let path = self.lock()?.log_path.clone();
        read_log(&path)
    }

    /// How many batches are stored.
    pub fn len(&self) -> Result<usize, InboxError> {
        Ok(self.lock()?.seen.len())
    }

    pub fn is_empty(&self) -> Result<bool, InboxError> {
        Ok(self.len()? == 0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, InboxError> {
        self.inner.lock().map_err(|_| InboxError::Internal {
            message: "inbox lock poisoned by an earlier panic".into(),
        })
    }

    fn store_blocking(inner: &Mutex<Inner>, batch: &PosBatch) -> Result<StoreOutcome, InboxError> {
        if !batch.id_matches_content() {
            return Err(InboxError::IdMismatch {
                batch: batch.id.clone(),
            });
        }
        let mut g = inner.lock().map_err(|_| InboxError::Internal {
            message: "inbox lock poisoned by an earlier panic".into(),
        })?;
        if let Some(&seq) = g.seen.get(&batch.id) {
            return Ok(StoreOutcome::AlreadyStored { seq });
        }
        let seq = g.next_seq;
        let mut line =
            serde_json::to_vec(&LineOut { seq, batch }).map_err(|e| InboxError::Internal {
                message: format!("encoding batch {}: {e}", batch.id),
            })?;
        line.push(b'\n');
        let path = g.log_path.clone();
        g.log
            .write_all(&line)
            .and_then(|()| g.log.sync_data())
            .map_err(|e| InboxError::io(&path, &e))?;
        g.seen.insert(batch.id.clone(), seq);
        g.next_seq += 1;
        Ok(StoreOutcome::Stored { seq })
    }

    fn commit_blocking(
        inner: &Mutex<Inner>,
        connector: &ConnectorId,
        feed: Feed,
        cursor: &PosCursor,
        after: &BatchId,
    ) -> Result<(), InboxError> {
        let g = inner.lock().map_err(|_| InboxError::Internal {
            message: "inbox lock poisoned by an earlier panic".into(),
        })?;
        let Some(&after_seq) = g.seen.get(after) else {
            return Err(InboxError::BatchNotStored {
                batch: after.clone(),
            });
        };
        let record = CursorRecord {
            connector: connector.clone(),
            feed,
            cursor: cursor.clone(),
            after_batch: after.clone(),
            after_seq,
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| InboxError::Internal {
            message: format!("encoding cursor: {e}"),
        })?;
        let dir = g.dir.join("cursors");
        let path = cursor_path(&g.dir, connector, feed);
        let tmp = dir.join(format!(".{connector}.{feed}.json.tmp"));
        {
            let mut f = File::create(&tmp).map_err(|e| InboxError::io(&tmp, &e))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| InboxError::io(&tmp, &e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| InboxError::io(&path, &e))?;
        sync_dir(&dir)
    }

    fn load_blocking(
        inner: &Mutex<Inner>,
        connector: &ConnectorId,
        feed: Feed,
    ) -> Result<Option<PosCursor>, InboxError> {
        let dir = inner
            .lock()
            .map_err(|_| InboxError::Internal {
                message: "inbox lock poisoned by an earlier panic".into(),
            })?
            .dir
            .clone();
        let path = cursor_path(&dir, connector, feed);
        match fs::read(&path) {
            Ok(bytes) => {
                let rec: CursorRecord =
                    serde_json::from_slice(&bytes).map_err(|e| InboxError::Corrupt {
                        path: path.clone(),
                        line: 1,
                        message: e.to_string(),
                    })?;
                Ok(Some(rec.cursor))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InboxError::io(&path, &e)),
        }
    }
}

fn cursor_path(dir: &Path, connector: &ConnectorId, feed: Feed) -> PathBuf {
    dir.join("cursors").join(format!("{connector}.{feed}.json"))
}

fn sync_dir(dir: &Path) -> Result<(), InboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| InboxError::io(dir, &e))
}

#[derive(Deserialize)]
struct LineIn {
    seq: u64,
    batch: PosBatch,
}

/// Read the log: ids seen, the next sequence number, and the length of the good prefix
/// (everything up to the last complete, readable line).
fn scan_log(path: &Path) -> Result<(HashMap<BatchId, u64>, u64, u64), InboxError> {
    let mut seen = HashMap::new();
    let mut next_seq = 1;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((seen, next_seq, 0)),
        Err(e) => return Err(InboxError::io(path, &e)),
    };
    let mut reader = BufReader::new(file);
    let mut good_len = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| InboxError::io(path, &e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // A last line without its newline is a write a crash interrupted: it was never
        // acknowledged, so cutting it off loses nothing.
        if buf.last() != Some(&b'\n') {
            break;
        }
        let line: LineIn = serde_json::from_slice(&buf).map_err(|e| InboxError::Corrupt {
            path: path.to_owned(),
            line: line_no,
            message: e.to_string(),
        })?;
        seen.insert(line.batch.id.clone(), line.seq);
        next_seq = next_seq.max(line.seq + 1);
        good_len += n as u64;
    }
    Ok((seen, next_seq, good_len))
}

fn read_log(path: &Path) -> Result<Vec<StoredBatch>, InboxError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InboxError::io(path, &e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| InboxError::io(path, &e))?;
        if line.is_empty() {
            continue;
        }
        let rec: LineIn = serde_json::from_str(&line).map_err(|e| InboxError::Corrupt {
            path: path.to_owned(),
            line: i as u64 + 1,
            message: e.to_string(),
        })?;
        out.push(StoredBatch {
            seq: rec.seq,
            batch: rec.batch,
        });
    }
    Ok(out)
}

fn join_error(e: tokio::task::JoinError) -> InboxError {
    InboxError::Internal {
        message: format!("inbox worker failed: {e}"),
    }
}

impl PosInbox for FileInbox {
    fn store_batch<'a>(
        &'a self,
        batch: &'a PosBatch,
    ) -> BoxFuture<'a, Result<StoreOutcome, InboxError>> {
        let inner = Arc::clone(&self.inner);
        let batch = batch.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::store_blocking(&inner, &batch))
                .await
                .map_err(join_error)?
        })
    }

    fn commit_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
        cursor: &'a PosCursor,
        after: &'a BatchId,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        let inner = Arc::clone(&self.inner);
        let (connector, cursor, after) = (connector.clone(), cursor.clone(), after.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                Self::commit_blocking(&inner, &connector, feed, &cursor, &after)
            })
            .await
            .map_err(join_error)?
        })
    }

    fn load_cursor<'a>(
        &'a self,
        connector: &'a ConnectorId,
        feed: Feed,
    ) -> BoxFuture<'a, Result<Option<PosCursor>, InboxError>> {
        let inner = Arc::clone(&self.inner);
        let connector = connector.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::load_blocking(&inner, &connector, feed))
                .await
                .map_err(join_error)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BatchPayload, PosCursor, RecordError, RecordErrorKind};
    use super::*;
    use tillbridge_core::pos::Timestamp;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn dir(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("tillbridge-inbox-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Dir(p)
    }

    fn batch(n: u32) -> PosBatch {
        PosBatch::new(
            ConnectorId::parse("c1").unwrap(),
            Feed::Sales,
            Some(format!("src-{n}")),
            BatchPayload::empty(Feed::Sales, Timestamp::EPOCH),
            vec![RecordError::new(
                RecordErrorKind::BadNumber,
                format!("e{n}"),
            )],
            PosCursor::from_opaque(format!("cursor-{n}")),
            false,
        )
    }

    #[tokio::test]
    async fn same_batch_twice_is_stored_once_with_its_first_sequence_number() {
        let d = dir("twice");
        let inbox = FileInbox::open(&d.0).unwrap();
        assert_eq!(
            inbox.store_batch(&batch(1)).await.unwrap(),
            StoreOutcome::Stored { seq: 1 }
        );
        assert_eq!(
            inbox.store_batch(&batch(2)).await.unwrap(),
            StoreOutcome::Stored { seq: 2 }
        );
        assert_eq!(
            inbox.store_batch(&batch(1)).await.unwrap(),
            StoreOutcome::AlreadyStored { seq: 1 }
        );
        let reopened = FileInbox::open(&d.0).unwrap();
        assert_eq!(
            reopened.store_batch(&batch(2)).await.unwrap(),
            StoreOutcome::AlreadyStored { seq: 2 }
        );
        assert_eq!(reopened.batches().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn committed_cursor_survives_a_reopen_and_leaves_no_temporary_file() {
        let d = dir("cursor");
        let c1 = ConnectorId::parse("c1").unwrap();
        {
            let inbox = FileInbox::open(&d.0).unwrap();
            let b = batch(1);
            inbox.store_batch(&b).await.unwrap();
            inbox
                .commit_cursor(&c1, Feed::Sales, &b.next_cursor, &b.id)
                .await
                .unwrap();
        }
        let inbox = FileInbox::open(&d.0).unwrap();
        assert_eq!(
            inbox.load_cursor(&c1, Feed::Sales).await.unwrap(),
            Some(PosCursor::from_opaque("cursor-1"))
        );
        assert_eq!(
            inbox.load_cursor(&c1, Feed::StockChanges).await.unwrap(),
            None
        );
        let names: Vec<String> = fs::read_dir(d.0.join("cursors"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["c1.sales.json".to_owned()]);
    }

    #[tokio::test]
    async fn an_unreadable_line_before_the_end_is_an_error_never_skipped() {
        let d = dir("corrupt");
        {
            let inbox = FileInbox::open(&d.0).unwrap();
            inbox.store_batch(&batch(1)).await.unwrap();
            inbox.store_batch(&batch(2)).await.unwrap();
        }
        let log = d.0.join("batches.jsonl");
        let text = fs::read_to_string(&log).unwrap();
        let damaged = text.replacen("{\"seq\":1", "{\"seq\":x", 1);
        fs::write(&log, damaged).unwrap();
        match FileInbox::open(&d.0) {
            Err(InboxError::Corrupt { line, .. }) => assert_eq!(line, 1),
            other => panic!("expected a corrupt-line error, got {other:?}"),
        }
    }
}
