//! Downstream recorders of settlements: where settled results are written for the trading
//! centre's books, the regulator, and registration of deal results (成交结果备案).
//!
//! Contract of [`Recorder`]: a recorder holds a prefix of the settlement stream and knows where
//! it stands ([`Recorder::cursor`]: the sequence of the last settlement it holds durably). The
//! outbox ([`super::outbox`]) hands it settlements after its cursor, in sequence order, in
//! batches, from one task at a time. [`Recorder::record`] returns only when the whole batch is
//! durable, and recording a settlement the recorder already holds (a sequence at or below its
//! cursor) changes nothing, so a batch may be retried after any error. An error means some of
//! the batch may or may not be durable: the outbox reads the cursor again before retrying.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::engine::Settlement;

/// The journal record a settlement was derived from: the change that concluded the auction.
/// Replaying the journal up to and including `seq` derives the settlement again, and `hash` is
/// the chain hash there, i.e. the journal's head hash at the moment of derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPosition {
    pub seq: u64,
    /// Hex SHA-256.
    pub hash: String,
}

impl From<crate::journal::Appended> for JournalPosition {
    fn from(at: crate::journal::Appended) -> JournalPosition {
        JournalPosition { seq: at.seq, hash: hex::encode(at.hash) }
    }
}

/// A settlement with its place in the settlement stream. Live and replayed settlements are the
/// same value, so `journal replay --out` writes the same bytes as `settlements.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSettlement {
    /// Its number in the settlement stream: assigned once when the auction concluded, carried
    /// in the journal entry that concluded it, never reused. Increasing in the order
    /// settlements are published; a number lost with a journal failure leaves a gap.
    pub sequence: u64,
    pub journal: JournalPosition,
    #[serde(flatten)]
    pub settlement: Settlement,
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("{recorder}: {source}")]
    Io { recorder: String, source: std::io::Error },
    #[error("{recorder}: line {line}: {reason}")]
    Corrupt { recorder: String, line: usize, reason: String },
    /// A remote recorder could not be reached or refused the write.
    #[error("{recorder}: {reason}")]
    Unavailable { recorder: String, reason: String },
}

#[tonic::async_trait]
pub trait Recorder: Send + Sync + 'static {
    /// A short name for logs, errors and the status report.
    fn name(&self) -> &str;
    /// The sequence of the last settlement this recorder holds durably (0: none).
    async fn cursor(&self) -> Result<u64, RecorderError>;
    /// Durably records `batch` (increasing sequences, after the cursor); idempotent by
    /// sequence.
    async fn record(&self, batch: &[Arc<RecordedSettlement>]) -> Result<(), RecorderError>;
}

/// One settlement per line, as JSON, fdatasynced after each batch: the embedded default, and
/// the recorder whose durability makes a settlement visible to the Results service.
pub struct JsonLinesRecorder {
    path: PathBuf,
    /// The file, and the sequence of its last line.
    file: Arc<Mutex<(File, u64)>>,
    /// Fault injection for tests: while set, the file behaves as a disk with this many bytes
    /// left (a write past it stops there and fails with ENOSPC).
    space_left: Arc<std::sync::atomic::AtomicU64>,
}

/// `space_left` when no fault is injected.
const UNLIMITED: u64 = u64::MAX;

impl JsonLinesRecorder {
    /// Opens `path`, creating it if needed. A torn last line (a crash in the middle of a
    /// write) is cut off with a warning: the outbox derives it again from the journal. Damage
    /// anywhere else is refused, naming the line.
    pub fn open(path: &Path) -> Result<JsonLinesRecorder, RecorderError> {
        let name = path.display().to_string();
        let io = |source| RecorderError::Io { recorder: name.clone(), source };
        let file = OpenOptions::new().create(true).read(true).append(true).open(path).map_err(io)?;
        crate::private::restrict(&file).map_err(io)?;
        let (complete, last) = Self::scan(path)?;
        let length = file.metadata().map_err(io)?.len();
        if complete < length {
            tracing::warn!(file = %name, offset = complete, bytes = length - complete, "settlements file had a torn last line; cutting it off (it is derived again from the journal)");
            file.set_len(complete).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(JsonLinesRecorder {
            path: path.to_owned(),
            file: Arc::new(Mutex::new((file, last))),
            space_left: Arc::new(std::sync::atomic::AtomicU64::new(UNLIMITED)),
        })
    }

    /// The length of the file's whole lines and the sequence of the last one. A last line
    /// without its newline is a torn write and not counted; any other unreadable line is
    /// damage, refused.
    fn scan(path: &Path) -> Result<(u64, u64), RecorderError> {
        let name = path.display().to_string();
        let io = |source| RecorderError::Io { recorder: name.clone(), source };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let (mut complete, mut last) = (0u64, 0u64);
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(io)?;
            if read == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let recorded: RecordedSettlement = serde_json::from_slice(&line).map_err(|e| RecorderError::Corrupt {
                recorder: name.clone(),
                line: number,
                reason: e.to_string(),
            })?;
            complete += read as u64;
            last = recorded.sequence;
        }
        Ok((complete, last))
    }

    /// Reads back every settlement in the file (for tools and tests).
    pub fn read_all(path: &Path) -> Result<Vec<RecordedSettlement>, RecorderError> {
        let name = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RecorderError::Io { recorder: name, source }),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| RecorderError::Io { recorder: name.clone(), source })?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: RecordedSettlement = serde_json::from_str(&line).map_err(|e| RecorderError::Corrupt {
                recorder: name.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For tests: the disk has `bytes` left (`None`: no limit). A write past it is cut short
    /// there and fails with ENOSPC, as on a nearly full disk.
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.space_left.store(bytes.unwrap_or(UNLIMITED), std::sync::atomic::Ordering::SeqCst);
    }

    /// The line `journal replay --out` and this recorder write for a settlement.
    pub fn line(settlement: &RecordedSettlement) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(settlement)?;
        line.push(b'\n');
        Ok(line)
    }
}

#[tonic::async_trait]
impl Recorder for JsonLinesRecorder {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn cursor(&self) -> Result<u64, RecorderError> {
        Ok(self.file.lock().unwrap_or_else(|p| p.into_inner()).1)
    }

    async fn record(&self, batch: &[Arc<RecordedSettlement>]) -> Result<(), RecorderError> {
        let (file, path) = (Arc::clone(&self.file), self.path.display().to_string());
        let space_left = self.space_left.load(std::sync::atomic::Ordering::SeqCst);
        let batch: Vec<Arc<RecordedSettlement>> = batch.to_vec();
        let write = move || {
            let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
            let cursor = guard.1;
            let mut bytes = Vec::new();
            let mut last = cursor;
            for settlement in batch.iter().filter(|s| s.sequence > cursor) {
                let line = Self::line(settlement).map_err(|e| RecorderError::Corrupt {
                    recorder: path.clone(),
                    line: 0,
                    reason: e.to_string(),
                })?;
                bytes.extend_from_slice(&line);
                last = settlement.sequence;
            }
            if bytes.is_empty() {
                return Ok(());
            }
            let io = |source| RecorderError::Io { recorder: path.clone(), source };
            let before = guard.0.metadata().map_err(io)?.len();
            let written = if (bytes.len() as u64) > space_left {
                // The injected nearly full disk: part of the batch lands, then ENOSPC.
                let part = &bytes[..usize::try_from(space_left).unwrap_or(0)];
                (&guard.0).write_all(part).and(Err(std::io::Error::from_raw_os_error(28)))
            } else {
                (&guard.0).write_all(&bytes)
            };
            if let Err(e) = written.and_then(|()| guard.0.sync_data()) {
                // Take back whatever part of the batch landed, so that the file never holds a
                // partial line and the retry appends whole lines after the last good one.
                let _ = guard.0.set_len(before).and_then(|()| guard.0.sync_data());
                return Err(io(e));
            }
            guard.1 = last;
            Ok(())
        };
        tokio::task::spawn_blocking(write).await.map_err(|e| RecorderError::Unavailable {
            recorder: self.path.display().to_string(),
            reason: e.to_string(),
        })?
    }
}

/// Keeps settlements in memory, for tests; can be told to fail, like a recorder that is down.
#[derive(Default)]
pub struct MemoryRecorder {
    records: Mutex<Vec<RecordedSettlement>>,
    down: std::sync::atomic::AtomicBool,
}

impl MemoryRecorder {
    pub fn records(&self) -> Vec<RecordedSettlement> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// While down, every call fails as a remote recorder out of reach would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), RecorderError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RecorderError::Unavailable { recorder: "memory".into(), reason: "down".into() });
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Recorder for MemoryRecorder {
    fn name(&self) -> &str {
        "memory"
    }

    async fn cursor(&self) -> Result<u64, RecorderError> {
        self.check()?;
        Ok(self.records.lock().unwrap_or_else(|p| p.into_inner()).last().map_or(0, |r| r.sequence))
    }

    async fn record(&self, batch: &[Arc<RecordedSettlement>]) -> Result<(), RecorderError> {
        self.check()?;
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = records.last().map_or(0, |r| r.sequence);
        records.extend(batch.iter().filter(|s| s.sequence > cursor).map(|s| (**s).clone()));
        Ok(())
    }
}
