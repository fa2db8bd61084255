//! The production [`SegmentStore`]: one preallocated file per segment in a directory, named by
//! the sequence number of its first record (`00000000000000000001.seg`), written with
//! `pwrite` and made durable with fdatasync. Its anchor is a file beside that directory, named
//! after it (`<data-dir>/journal.anchor` for `<data-dir>/journal`), so that deleting the whole
//! directory does not delete the anchor too. It must never interpret the bytes it holds.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::store::{SegmentStore, no_current_segment};

/// Segment files in one directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Beside `dir`, never in it; fixed at construction ([`anchor_path`]).
    anchor: PathBuf,
    /// The segment the writer appends to; set by `start_segment` and `resume`.
    current: Option<File>,
}

impl FileStore {
    /// A store in `dir`, its anchor at [`anchor_path`]`(dir)`. Creates nothing: a missing
    /// directory reads as an empty journal, and [`Journal::open`](super::Journal::open) creates
    /// it before writing.
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        let dir = dir.into();
        FileStore { anchor: anchor_path(&dir), dir, current: None }
    }

    /// Makes a change to the directory's entries (a new or deleted file) durable.
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

/// Where the anchor of the journal in `dir` is: beside it, its name with `.anchor` appended
/// (`/data/journal` → `/data/journal.anchor`), so that deleting the directory leaves it. A
/// directory given without a name of its own (`.`, `..`) is named by its canonical path; only
/// the root directory, with no name and nothing beside it, keeps its anchor inside.
pub fn anchor_path(dir: &Path) -> PathBuf {
    let named = match dir.file_name() {
        Some(_) => dir.to_path_buf(),
        None => dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
    };
    match named.file_name() {
        Some(name) => {
            let mut name = name.to_owned();
            name.push(".anchor");
            named.with_file_name(name)
        }
        None => named.join("journal.anchor"),
    }
}

pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

impl SegmentStore for FileStore {
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(segment_name(first_seq))
    }

    fn list(&self) -> io::Result<Vec<u64>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            // Only names this store writes: another file that merely parses as a number is not
            // a segment, and reading it under its canonical name would read the wrong file.
            let first = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first.filter(|f| name.to_str() == Some(segment_name(*f).as_str())) {
                out.push(first);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read(&self, first_seq: u64) -> io::Result<Vec<u8>> {
        std::fs::read(self.segment_path(first_seq))
    }

    fn cut(&mut self, first_seq: u64, from: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.segment_path(first_seq))?;
        let to = file.metadata()?.len();
        if to > from {
            file.write_all_at(&vec![0u8; (to - from) as usize], from)?;
        }
        file.sync_data()
    }

    fn remove(&mut self, first_seq: u64) -> io::Result<()> {
        std::fs::remove_file(self.segment_path(first_seq))?;
        // A removed segment that came back after a crash would hold records after the cut.
        self.sync_dir()
    }

    fn resume(&mut self, first_seq: u64) -> io::Result<()> {
        self.current = Some(OpenOptions::new().write(true).open(self.segment_path(first_seq))?);
        Ok(())
    }

    fn start_segment(&mut self, first_seq: u64, header: &[u8], capacity: u64) -> io::Result<()> {
        let file = OpenOptions::new().create_new(true).read(true).write(true).open(self.segment_path(first_seq))?;
        crate::private::restrict(&file)?;
        if rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, capacity).is_err() {
            // Some filesystems cannot preallocate; a sparse file works, its syncs are slower.
            file.set_len(capacity)?;
        }
        file.write_all_at(header, 0)?;
        file.sync_all()?;
        // The new file's name must be durable too.
        self.sync_dir()?;
        self.current = Some(file);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.current.as_ref().ok_or_else(no_current_segment)?.write_all_at(bytes, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.current.as_ref().ok_or_else(no_current_segment)?.sync_data()
    }

    fn anchor_path(&self) -> PathBuf {
        self.anchor.clone()
    }

    fn read_anchor(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.anchor) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_anchor(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Written whole and synced under another name, then renamed over the old one: a crash
        // leaves the old anchor or the new one, never part of one.
        let mut tmp = self.anchor.clone().into_os_string();
        tmp.push(".tmp");
        let mut file = File::create(&tmp)?;
        crate::private::restrict(&file)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.anchor)?;
        // The rename must be durable too.
        let parent = self.anchor.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(parent)?.sync_all()
    }
}
