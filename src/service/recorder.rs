//! Downstream recorders of settlements: where settled results are written for the trading
//! centre's books, the regulator, and registration of deal results (成交结果备案).
//!
//! Contract: [`Recorder::record`] is called once per settlement, in sequence order, from one
//! thread at a time. It returns only when the record is durable (for files: written and
//! fdatasynced). An error means the record may not be durable; the hub logs it and reports
//! the recorder unhealthy, and the settlement stays available from the Results service.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// A settlement with its place in the settlement stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSettlement {
    /// Position in the stream, from 1, gapless.
    pub sequence: u64,
    /// Absent only when the exchange runs without a journal (tests of the shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalPosition>,
    #[serde(flatten)]
    pub settlement: Settlement,
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("{recorder}: {source}")]
    Io { recorder: String, source: std::io::Error },
    #[error("{recorder}: line {line}: {reason}")]
    Corrupt { recorder: String, line: usize, reason: String },
}

pub trait Recorder: Send + Sync + 'static {
    /// A short name for logs and errors.
    fn name(&self) -> &str;
    /// Durably records one settlement.
    fn record(&self, settlement: &RecordedSettlement) -> Result<(), RecorderError>;
}

/// Appends one JSON object per line to a file and fdatasyncs after each settlement.
/// Settlements are rare (one per auction), so a sync each is cheap and the simplest honest
/// durability.
pub struct JsonLinesRecorder {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesRecorder {
    pub fn open(path: &Path) -> Result<JsonLinesRecorder, RecorderError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecorderError::Io { recorder: path.display().to_string(), source })?;
        Ok(JsonLinesRecorder { path: path.to_owned(), file: Mutex::new(file) })
    }

    /// Reads back every settlement recorded so far, to continue the stream after a restart.
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
}

impl Recorder for JsonLinesRecorder {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn record(&self, settlement: &RecordedSettlement) -> Result<(), RecorderError> {
        let mut line = serde_json::to_vec(settlement).expect("settlements always serialize");
        line.push(b'\n');
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| RecorderError::Io { recorder: self.path.display().to_string(), source };
        (&*file).write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

/// Keeps settlements in memory, for tests.
#[derive(Default)]
pub struct MemoryRecorder {
    records: Mutex<Vec<RecordedSettlement>>,
}

impl MemoryRecorder {
    pub fn records(&self) -> Vec<RecordedSettlement> {
        self.records.lock().unwrap().clone()
    }
}

impl Recorder for MemoryRecorder {
    fn name(&self) -> &str {
        "memory"
    }

    fn record(&self, settlement: &RecordedSettlement) -> Result<(), RecorderError> {
        self.records.lock().unwrap().push(settlement.clone());
        Ok(())
    }
}
