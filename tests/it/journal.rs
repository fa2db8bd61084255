//! The journal's contract, run against both stores (real files and memory) through one
//! `Backend` helper: group commit, segments, recovery of torn tails, refusal on damaged synced
//! data, hash-chain tamper detection, and the failure contract under injected write, sync and
//! disk-full errors, and the anchor that shows lost segments. Then what only one store can
//! show: a simulated power loss on the memory store, and the `journal verify` command on files.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use emission_auction::journal::format::{self, Decoded, HEADER_LEN, RECORD_OVERHEAD};
use emission_auction::journal::{
    Anchor, Faults, FileStore, Journal, JournalError, MemoryStore, Options, Recovered, SegmentStore, Stats, SyncPolicy,
    anchor_path,
};

/// Where a test journal keeps its segments: for files, `journal/` in a temporary data
/// directory, so that the anchor beside it goes with the directory.
enum Backend {
    Files(tempfile::TempDir),
    Memory(MemoryStore),
}

impl Backend {
    fn files() -> Backend {
        Backend::Files(tempfile::tempdir().unwrap())
    }

    fn memory() -> Backend {
        Backend::Memory(MemoryStore::new())
    }

    /// The journal directory (files only).
    fn dir(&self) -> PathBuf {
        match self {
            Backend::Files(data) => data.path().join("journal"),
            Backend::Memory(_) => panic!("a memory store has no directory"),
        }
    }

    /// Another handle on the store, to look at or change it behind the journal's back.
    fn store(&self) -> Box<dyn SegmentStore> {
        match self {
            Backend::Files(_) => Box::new(FileStore::new(self.dir())),
            Backend::Memory(store) => Box::new(store.clone()),
        }
    }

    /// Opens (recovering) the journal, as a restart would.
    fn open(&self, options: Options) -> Result<(Journal, Recovered, Arc<Stats>), JournalError> {
        match self {
            Backend::Files(_) => Journal::open(&self.dir(), options),
            Backend::Memory(store) => Journal::open_store(store.clone(), options),
        }
    }

    fn verify(&self) -> Result<Recovered, JournalError> {
        match self {
            Backend::Files(_) => emission_auction::journal::verify(&self.dir()),
            Backend::Memory(store) => emission_auction::journal::verify_store(store),
        }
    }

    /// Each segment's path, as the journal names it in errors, and its bytes.
    fn segments(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let store = self.store();
        store.list().unwrap().into_iter().map(|f| (store.segment_path(f), store.read(f).unwrap())).collect()
    }

    /// The anchor as the store holds it now.
    fn anchor(&self) -> Option<Anchor> {
        self.store().read_anchor().unwrap().map(|bytes| Anchor::decode(&bytes).unwrap())
    }

    fn segment(&self, index: usize) -> (PathBuf, Vec<u8>) {
        self.segments().swap_remove(index)
    }

    /// Overwrites bytes of a segment behind the journal's back (a crash's leftovers, damage, a
    /// forger).
    fn overwrite(&self, index: usize, offset: usize, bytes: &[u8]) {
        match self {
            Backend::Files(_) => {
                let file = std::fs::OpenOptions::new().write(true).open(self.segment(index).0).unwrap();
                file.write_all_at(bytes, offset as u64).unwrap();
            }
            Backend::Memory(store) => store.damage(store.list().unwrap()[index], offset, bytes),
        }
    }

    /// Opens a fresh journal, appends `n` records, closes it, and returns its first segment.
    async fn segment_after(self, options: Options, n: u64) -> (PathBuf, Vec<u8>) {
        let (journal, _, _) = self.open(options).unwrap();
        append_n(&journal, 0..n).await;
        drop(journal);
        self.segment(0)
    }

    fn flip_bit(&self, index: usize, offset: usize) {
        let byte = self.segment(index).1[offset];
        self.overwrite(index, offset, &[byte ^ 0x10]);
    }
}

/// Runs a contract test `async fn name(Backend)` once per store, as `name::files` and
/// `name::memory`.
macro_rules! on_both_stores {
    ($test:ident) => {
        on_both_stores!(
            #[tokio::test]
            $test
        );
    };
    (#[$runtime:meta] $test:ident) => {
        mod $test {
            #[$runtime]
            async fn files() {
                super::$test(super::Backend::files()).await
            }
            #[$runtime]
            async fn memory() {
                super::$test(super::Backend::memory()).await
            }
        }
    };
}

fn payload(n: u64) -> Vec<u8> {
    format!("{{\"command\":\"place_bid\",\"n\":{n}}}").into_bytes()
}

/// Offsets of the records in one segment.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record { len, .. } = format::decode(&bytes[at..]) {
        offsets.push(at);
        at += len;
    }
    offsets
}

/// Where the next record would start in one segment.
fn end_of_records(bytes: &[u8]) -> usize {
    let mut at = HEADER_LEN;
    while let Decoded::Record { len, .. } = format::decode(&bytes[at..]) {
        at += len;
    }
    at
}

async fn append_n(journal: &Journal, range: std::ops::Range<u64>) {
    for n in range {
        journal.append(payload(n)).await.unwrap();
    }
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_appends_are_group_committed_and_recovered_in_order
);
async fn concurrent_appends_are_group_committed_and_recovered_in_order(b: Backend) {
    let (journal, recovered, stats) = b.open(Options::default()).unwrap();
    assert!(recovered.records.is_empty() && recovered.head.is_none());
    let journal = Arc::new(journal);
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let j = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..50 {
                acks.push(j.append(payload(t * 1000 + i)).await.unwrap());
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    let seqs: BTreeSet<u64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (1..=3200).collect::<BTreeSet<u64>>(), "every append got its own gapless sequence number");
    let syncs = stats.syncs.load(Ordering::Relaxed);
    assert!(
        syncs > 0 && syncs < 3200,
        "64 concurrent appenders should share syncs, got {syncs} syncs for 3200 records"
    );
    let head = acks.iter().max_by_key(|a| a.seq).copied().unwrap();
    drop(Arc::into_inner(journal).unwrap());

    let (_journal, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 3200);
    assert!(recovered.records.iter().enumerate().all(|(i, r)| r.at.seq == i as u64 + 1));
    let payloads: BTreeSet<Vec<u8>> = recovered.entries().map(|(_, p)| p.to_vec()).collect();
    let sent: BTreeSet<Vec<u8>> = (0..64u64).flat_map(|t| (0..50).map(move |i| payload(t * 1000 + i))).collect();
    assert_eq!(payloads, sent);
    assert_eq!(recovered.head, Some(head), "the recovered head hash is the last acknowledged one");
    assert!(recovered.truncated.is_none());
}

on_both_stores!(segments_roll_and_recovery_continues_across_them);
async fn segments_roll_and_recovery_continues_across_them(b: Backend) {
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let (journal, _, _) = b.open(options.clone()).unwrap();
    append_n(&journal, 0..300).await;
    drop(journal);
    let segments = b.segments();
    assert!(segments.len() > 3, "expected several 4 KiB segments, got {}", segments.len());
    if let Backend::Files(_) = b {
        for (path, _) in &segments {
            assert_eq!(std::fs::metadata(path).unwrap().len(), 4096, "segment files are preallocated to full size");
        }
    }
    let (journal, recovered, _) = b.open(options.clone()).unwrap();
    assert_eq!(recovered.records.len(), 300);
    assert_eq!(journal.append(payload(300)).await.unwrap().seq, 301);
    drop(journal);
    let (_, recovered, _) = b.open(options).unwrap();
    let last = recovered.records.last().unwrap();
    assert_eq!((last.at.seq, recovered.payload(last)), (301, &payload(300)[..]));
}

on_both_stores!(a_torn_tail_is_cut_off_and_appending_resumes_after_it);
async fn a_torn_tail_is_cut_off_and_appending_resumes_after_it(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    // A crash mid-batch: half of an eleventh record reached the medium.
    let (seg, bytes) = b.segment(0);
    let end = end_of_records(&bytes);
    let mut torn = Vec::new();
    format::encode(&mut torn, 11, &[7; 32], &payload(10));
    b.overwrite(0, end, &torn[..torn.len() / 2]);

    let (journal, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 10);
    let (path, offset, seq) = recovered.truncated.clone().unwrap();
    assert_eq!((&path, offset as usize, seq), (&seg, end, 11));
    assert_eq!(journal.append(payload(10)).await.unwrap().seq, 11);
    drop(journal);
    let (_, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 11);
    assert!(recovered.truncated.is_none());
}

on_both_stores!(a_flipped_bit_in_the_last_unanchored_record_is_a_torn_tail);
async fn a_flipped_bit_in_the_last_unanchored_record_is_a_torn_tail(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    // The anchor names record 10 (closed cleanly); one from before it was synced does not.
    let ninth = b.verify().unwrap().records[8].at;
    b.store().write_anchor(&Anchor { seq: 9, hash: ninth.hash, segment: 1 }.encode()).unwrap();
    let (seg, bytes) = b.segment(0);
    let last = *record_offsets(&bytes).last().unwrap();
    b.flip_bit(0, last + RECORD_OVERHEAD + 3);
    let (_, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 9);
    assert_eq!(recovered.truncated, Some((seg, last as u64, 10)));
}

on_both_stores!(a_flipped_bit_in_the_last_anchored_record_refuses_to_start);
/// Guards against damage to the last synced record passing for a torn tail and being cut off.
async fn a_flipped_bit_in_the_last_anchored_record_refuses_to_start(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    let last = *record_offsets(&b.segment(0).1).last().unwrap();
    b.flip_bit(0, last + RECORD_OVERHEAD + 3);
    let before = b.segments();
    let err = expect_missing(b.open(Options::default()).map(drop), 10, 9);
    assert!(err.contains(&format!("record 10 in {} at offset {last}", b.segment(0).0.display())), "{err}");
    assert_eq!(b.segments(), before, "refusing must not change the journal");
}

on_both_stores!(a_flipped_bit_in_the_middle_refuses_to_start_and_names_the_place);
async fn a_flipped_bit_in_the_middle_refuses_to_start_and_names_the_place(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    let (seg, bytes) = b.segment(0);
    let third = record_offsets(&bytes)[2];
    b.flip_bit(0, third + RECORD_OVERHEAD + 1);
    let before = b.segments();
    match b.open(Options::default()) {
        Err(JournalError::Corrupt { segment, offset, seq, .. }) => {
            assert_eq!((segment.as_str(), offset as usize, seq), (seg.to_str().unwrap(), third, 3));
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("opened a journal whose synced data is damaged"),
    }
    assert_eq!(b.segments(), before, "refusing must not change the journal");
}

on_both_stores!(rewriting_a_record_with_a_fresh_crc_breaks_the_hash_chain);
async fn rewriting_a_record_with_a_fresh_crc_breaks_the_hash_chain(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    drop(journal);
    let bytes = b.segment(0).1;
    let second = record_offsets(&bytes)[1];
    // A forger rewrites record 2 with a different payload of the same length and a valid CRC,
    // keeping its old chain hash.
    let Decoded::Record { hash, .. } = format::decode(&bytes[second..]) else { panic!() };
    let forged_payload = payload(1).iter().map(|b| if *b == b'1' { b'7' } else { *b }).collect::<Vec<u8>>();
    let mut forged = Vec::new();
    format::encode(&mut forged, 2, &hash, &forged_payload);
    b.overwrite(0, second, &forged);
    match b.open(Options::default()) {
        Err(JournalError::Corrupt { seq, reason, .. }) => {
            assert_eq!((seq, reason.as_str()), (2, "sequence or hash chain broken"))
        }
        other => panic!("forgery went unnoticed: {:?}", other.map(|_| ())),
    }
}

fn clear(faults: &Faults) {
    faults.fail_writes.store(false, Ordering::SeqCst);
    faults.fail_syncs.store(false, Ordering::SeqCst);
    faults.disk_full_at.store(0, Ordering::SeqCst);
}

async fn failure_contract(b: Backend, inject: impl Fn(&Faults)) {
    let faults = Arc::new(Faults::default());
    let options = Options { faults: Some(Arc::clone(&faults)), ..Options::default() };
    let (journal, _, _) = b.open(options).unwrap();
    append_n(&journal, 0..5).await;
    inject(&faults);
    assert!(matches!(journal.append(payload(5)).await, Err(JournalError::Failed(_))));
    // Even once the fault is gone, nothing more is acknowledged until the journal is reopened.
    clear(&faults);
    assert!(matches!(journal.append(payload(6)).await, Err(JournalError::Failed(_))));
    drop(journal);
    let (journal, recovered, _) = b.open(Options::default()).unwrap();
    // The five acknowledged records are there; the failed append may or may not have reached
    // the medium (it was never acknowledged), and nothing after it.
    assert!(recovered.records.len() == 5 || recovered.records.len() == 6, "{} records", recovered.records.len());
    let first: Vec<(u64, Vec<u8>)> = recovered.entries().take(5).map(|(at, p)| (at.seq, p.to_vec())).collect();
    assert_eq!(first, (0..5).map(|n| (n + 1, payload(n))).collect::<Vec<_>>());
    assert!(journal.append(payload(7)).await.is_ok(), "a reopened journal accepts appends again");
}

on_both_stores!(a_sync_error_stops_all_acknowledgements);
async fn a_sync_error_stops_all_acknowledgements(b: Backend) {
    failure_contract(b, |f| f.fail_syncs.store(true, Ordering::SeqCst)).await;
}

on_both_stores!(a_write_error_stops_all_acknowledgements);
async fn a_write_error_stops_all_acknowledgements(b: Backend) {
    failure_contract(b, |f| f.fail_writes.store(true, Ordering::SeqCst)).await;
}

on_both_stores!(a_full_disk_stops_all_acknowledgements);
async fn a_full_disk_stops_all_acknowledgements(b: Backend) {
    failure_contract(b, |f| f.disk_full_at.store(HEADER_LEN as u64 + 1, Ordering::SeqCst)).await;
}

on_both_stores!(a_sync_error_fails_every_queued_record_and_all_later_ones);
async fn a_sync_error_fails_every_queued_record_and_all_later_ones(b: Backend) {
    let faults = Arc::new(Faults::default());
    let (journal, _, _) = b.open(Options { faults: Some(Arc::clone(&faults)), ..Options::default() }).unwrap();
    append_n(&journal, 0..5).await;
    faults.fail_syncs.store(true, Ordering::SeqCst);
    // Ten records queued before any answer, so that the writer batches them as it will.
    let mut pending = Vec::new();
    for n in 5..15 {
        pending.push(journal.reserve().await.unwrap().submit(payload(n)));
    }
    for p in pending {
        assert!(matches!(p.wait().await, Err(JournalError::Failed(_))), "a record of a failed batch was acknowledged");
    }
    clear(&faults);
    assert!(matches!(journal.append(payload(15)).await, Err(JournalError::Failed(_))));
    drop(journal);
    if let Backend::Memory(store) = &b {
        // On a power loss the written but unsynced records go too.
        store.crash(0);
    }
    let (journal, recovered, _) = b.open(Options::default()).unwrap();
    let n = recovered.records.len();
    match b {
        Backend::Memory(_) => assert_eq!(n, 5),
        // The failed batch was written before its sync failed; it may survive, never acknowledged.
        Backend::Files(_) => assert!((5..=15).contains(&n), "{n} records"),
    }
    let first: Vec<Vec<u8>> = recovered.entries().take(5).map(|(_, p)| p.to_vec()).collect();
    assert_eq!(first, (0..5).map(payload).collect::<Vec<_>>());
    assert_eq!(journal.append(payload(16)).await.unwrap().seq, n as u64 + 1);
}

on_both_stores!(an_empty_segment_left_by_a_crash_during_a_roll_is_removed);
/// Guards against a crash between creating a segment and writing its header stopping later
/// starts (the empty segment used to stay, and refused the start once a later one was written).
async fn an_empty_segment_left_by_a_crash_during_a_roll_is_removed(b: Backend) {
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let (journal, _, _) = b.open(options.clone()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    b.store().start_segment(11, &[0; HEADER_LEN], 4096).unwrap();
    let (journal, recovered, _) = b.open(options.clone()).unwrap();
    assert_eq!(recovered.records.len(), 10);
    append_n(&journal, 10..200).await;
    drop(journal);
    let (_, recovered, _) = b.open(options).unwrap();
    assert_eq!(recovered.records.len(), 200);
    assert!(b.segments().len() > 2);
}

on_both_stores!(without_sync_nothing_is_synced);
async fn without_sync_nothing_is_synced(b: Backend) {
    let (journal, _, stats) = b.open(Options { sync: SyncPolicy::Never, ..Options::default() }).unwrap();
    append_n(&journal, 0..20).await;
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 0);
    assert_eq!(stats.records.load(Ordering::Relaxed), 20);
}

on_both_stores!(verify_reports_a_torn_tail_without_repairing);
async fn verify_reports_a_torn_tail_without_repairing(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    let head = journal.append(payload(5)).await.unwrap();
    drop(journal);
    let verified = b.verify().unwrap();
    assert_eq!((verified.records.len(), verified.head), (6, Some(head)));

    let (seg, bytes) = b.segment(0);
    let end = end_of_records(&bytes);
    b.overwrite(0, end, &[9, 9, 9]);
    let before = b.segments();
    let verified = b.verify().unwrap();
    assert_eq!(verified.records.len(), 6);
    assert_eq!(verified.truncated, Some((seg, end as u64, 7)));
    assert_eq!(b.segments(), before, "verify must not change the journal");

    b.flip_bit(0, record_offsets(&bytes)[1] + RECORD_OVERHEAD);
    assert!(matches!(b.verify(), Err(JournalError::Corrupt { seq: 2, .. })));
}

fn small_segments() -> Options {
    Options { segment_bytes: 4096, ..Options::default() }
}

/// Writes 130 records into three 4 KiB segments and closes the journal cleanly; the last
/// record's position.
async fn three_segments(b: &Backend) -> emission_auction::journal::Appended {
    let (journal, _, _) = b.open(small_segments()).unwrap();
    append_n(&journal, 0..129).await;
    let head = journal.append(payload(129)).await.unwrap();
    drop(journal);
    assert_eq!(b.segments().len(), 3);
    head
}

/// The writer anchors after it answers a batch: waits up to 5 s for `check` to find it.
async fn eventually<T>(check: impl Fn() -> Option<T>) -> Option<T> {
    for _ in 0..500 {
        if let Some(found) = check() {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Checks that `result` is the refusal of a journal holding records up to `found` under an
/// anchor naming `anchored`; its message.
fn expect_missing(result: Result<(), JournalError>, anchored: u64, found: u64) -> String {
    match result {
        Err(e @ JournalError::Missing { anchored_seq, found_seq, .. }) => {
            assert_eq!((anchored_seq, found_seq), (anchored, found), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("records up to {anchored}")) && text.contains("refusing to start"),
                "{text}"
            );
            text
        }
        Err(other) => panic!("expected a refusal naming missing records, got {other}"),
        Ok(()) => panic!("opened a journal that lost anchored records"),
    }
}

on_both_stores!(deleting_the_last_of_three_segments_refuses_to_start_naming_it);
/// Guards issue 10: a deleted last segment started the server silently without its records.
async fn deleting_the_last_of_three_segments_refuses_to_start_naming_it(b: Backend) {
    let head = three_segments(&b).await;
    let last = b.store().list().unwrap()[2];
    let path = b.store().segment_path(last);
    b.store().remove(last).unwrap();
    let before = b.segments();
    let err = expect_missing(b.open(small_segments()).map(drop), head.seq, last - 1);
    assert!(err.contains(&format!("{} is missing", path.display())), "{err}");
    assert!(err.contains(&hex::encode(head.hash)), "{err}");
    assert_eq!(b.segments(), before, "refusing must not change the journal");
    assert_eq!(expect_missing(b.verify().map(drop), head.seq, last - 1), err, "verify reports the same");
}

on_both_stores!(zero_filling_or_emptying_the_last_segment_refuses_to_start);
/// Guards issue 10: a zero-filled last segment passed for a crash's leftover and was removed.
async fn zero_filling_or_emptying_the_last_segment_refuses_to_start(b: Backend) {
    let head = three_segments(&b).await;
    let (path, bytes) = b.segment(2);
    let last = b.store().list().unwrap()[2];
    b.overwrite(2, 0, &vec![0; bytes.len()]);
    let before = b.segments();
    let err = expect_missing(b.open(small_segments()).map(drop), head.seq, last - 1);
    assert!(err.contains(&format!("{} holds nothing", path.display())), "{err}");
    assert_eq!(b.segments(), before, "the zeroed segment is kept, not removed as a crash's leftover");
    expect_missing(b.verify().map(drop), head.seq, last - 1);

    // Zeroed after its header: a segment with no records.
    b.overwrite(2, 0, &format::header(last));
    let err = expect_missing(b.open(small_segments()).map(drop), head.seq, last - 1);
    assert!(err.contains(&format!("{} holds no records", path.display())), "{err}");

    // Zeroed from the middle of its records: cut short.
    b.overwrite(2, 0, &bytes[..record_offsets(&bytes)[5]]);
    let err = expect_missing(b.open(small_segments()).map(drop), head.seq, last + 4);
    assert!(err.contains(&format!("{} holds records only up to {}", path.display(), last + 4)), "{err}");

    if let Backend::Files(_) = b {
        // Emptied: the file truncated to nothing.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        let err = expect_missing(b.open(small_segments()).map(drop), head.seq, last - 1);
        assert!(err.contains(&format!("{} holds nothing", path.display())), "{err}");
        assert!(path.exists());
    }
}

on_both_stores!(deleting_every_segment_or_the_journal_directory_refuses_to_start);
/// Guards issue 10: an empty journal directory gave a silent fresh start with no auctions.
async fn deleting_every_segment_or_the_journal_directory_refuses_to_start(b: Backend) {
    let head = three_segments(&b).await;
    let mut store = b.store();
    for first in store.list().unwrap() {
        store.remove(first).unwrap();
    }
    let err = expect_missing(b.open(small_segments()).map(drop), head.seq, 0);
    assert!(err.contains("there is no segment at all"), "{err}");
    expect_missing(b.verify().map(drop), head.seq, 0);
    if let Backend::Files(_) = b {
        std::fs::remove_dir_all(b.dir()).unwrap();
        expect_missing(b.verify().map(drop), head.seq, 0);
        expect_missing(b.open(small_segments()).map(drop), head.seq, 0);
        assert!(anchor_path(&b.dir()).exists(), "the anchor is beside the directory, not in it");
    }
}

on_both_stores!(a_clean_close_anchors_the_head_and_reopens);
async fn a_clean_close_anchors_the_head_and_reopens(b: Backend) {
    let head = three_segments(&b).await;
    let third = b.store().list().unwrap()[2];
    let anchor = b.anchor().unwrap();
    assert_eq!(anchor, Anchor { seq: head.seq, hash: head.hash, segment: third });
    let (journal, recovered, _) = b.open(small_segments()).unwrap();
    assert_eq!((recovered.head, recovered.anchor, &recovered.truncated), (Some(head), Some(anchor), &None));
    let next = journal.append(payload(130)).await.unwrap();
    drop(journal);
    assert_eq!(b.anchor().map(|a| (a.seq, a.hash)), Some((next.seq, next.hash)));
    assert_eq!(b.verify().unwrap().anchor, b.anchor());
}

on_both_stores!(a_journal_without_an_anchor_is_accepted_and_anchored);
/// A journal written before anchors existed (or whose anchor was deleted) still starts.
async fn a_journal_without_an_anchor_is_accepted_and_anchored(b: Backend) {
    let (journal, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!((recovered.anchor, b.anchor()), (None, None), "a fresh journal has no anchor until its first segment");
    let first = journal.append(payload(0)).await.unwrap();
    assert_eq!(
        eventually(|| b.anchor().filter(|a| a.seq == 1)).await,
        Some(Anchor { seq: 1, hash: first.hash, segment: 1 }),
        "anchored at the first roll"
    );
    append_n(&journal, 1..5).await;
    drop(journal);
    match &b {
        Backend::Files(_) => std::fs::remove_file(anchor_path(&b.dir())).unwrap(),
        Backend::Memory(store) => store.remove_anchor(),
    }
    let (_journal, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!((recovered.records.len(), recovered.anchor), (5, None));
    let head = recovered.head.unwrap();
    assert_eq!(b.anchor(), Some(Anchor { seq: 5, hash: head.hash, segment: 1 }), "anchored on open");
}

on_both_stores!(another_journal_under_the_anchor_refuses_to_start);
/// A journal replaced by another one (restored from elsewhere, rewritten) with as many records.
async fn another_journal_under_the_anchor_refuses_to_start(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 100..105).await;
    drop(journal);
    let theirs = b.anchor().unwrap();
    let mut store = b.store();
    store.remove(1).unwrap();
    store.write_anchor(&Anchor { seq: 0, hash: [0; 32], segment: 1 }.encode()).unwrap();
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    store.write_anchor(&theirs.encode()).unwrap();
    let err = expect_missing(b.open(Options::default()).map(drop), 5, 10);
    assert!(err.contains("record 5 has hash") && err.contains("not the journal the anchor was written for"), "{err}");
}

on_both_stores!(a_damaged_anchor_refuses_to_start);
async fn a_damaged_anchor_refuses_to_start(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    drop(journal);
    let mut bytes = b.anchor().unwrap().encode();
    bytes[10] ^= 1;
    b.store().write_anchor(&bytes).unwrap();
    for result in [b.open(Options::default()).map(drop), b.verify().map(drop)] {
        match result {
            Err(JournalError::BadAnchor { reason, .. }) => assert_eq!(reason, "CRC32C mismatch"),
            other => panic!("expected a damaged anchor, got {:?}", other.err()),
        }
    }
}

on_both_stores!(the_anchor_from_the_last_roll_survives_a_crash_and_shows_a_lost_segment);
/// The anchor written at a roll, atomically, holds after a crash with no clean close; a crash
/// in the middle of replacing it (a half-written temporary file) leaves the old one.
async fn the_anchor_from_the_last_roll_survives_a_crash_and_shows_a_lost_segment(b: Backend) {
    // Only rolls anchor here, never the timer.
    let options = Options { anchor_every: Duration::from_secs(3600), ..small_segments() };
    let (journal, _, _) = b.open(options.clone()).unwrap();
    append_n(&journal, 0..130).await;
    // A crash: the journal is never closed (its writer is left waiting, and anchors no more).
    std::mem::forget(journal);
    match &b {
        Backend::Memory(store) => store.crash(0),
        Backend::Files(_) => {
            let mut tmp = anchor_path(&b.dir()).into_os_string();
            tmp.push(".tmp");
            std::fs::write(tmp, b"EAANCHR1 half").unwrap();
        }
    }
    let third = b.store().list().unwrap()[2];
    // Each append was its own batch: the one that rolled held just the third segment's first
    // record.
    let anchor = b.anchor().unwrap();
    assert_eq!((anchor.seq, anchor.segment), (third, third));
    let verified = b.verify().unwrap();
    assert_eq!((verified.records.len(), verified.anchor), (130, Some(anchor)));

    b.store().remove(third).unwrap();
    let err = expect_missing(b.open(options).map(drop), third, third - 1);
    assert!(err.contains(&format!("{} is missing", b.store().segment_path(third).display())), "{err}");
}

on_both_stores!(an_idle_journal_is_anchored_within_anchor_every);
async fn an_idle_journal_is_anchored_within_anchor_every(b: Backend) {
    let options = Options { anchor_every: Duration::from_millis(20), ..Options::default() };
    let (journal, _, _) = b.open(options).unwrap();
    append_n(&journal, 0..4).await;
    let head = journal.append(payload(4)).await.unwrap();
    // No more appends and no close: the writer anchors on its own once due.
    let anchor = eventually(|| b.anchor().filter(|a| a.seq == head.seq)).await;
    assert_eq!(anchor, Some(Anchor { seq: head.seq, hash: head.hash, segment: 1 }));
    drop(journal);
}

#[tokio::test]
async fn a_torn_tail_after_the_anchor_is_cut_off_not_refused() {
    // Anchored after every batch: the anchor names every synced record.
    let store = MemoryStore::new();
    let faults = Arc::new(Faults::default());
    let options = Options { faults: Some(Arc::clone(&faults)), anchor_every: Duration::ZERO, ..Options::default() };
    let (journal, _, _) = Journal::open_store(store.clone(), options).unwrap();
    append_n(&journal, 0..5).await;
    let anchored = || store.read_anchor().unwrap().map(|a| Anchor::decode(&a).unwrap()).filter(|a| a.seq == 5);
    assert!(eventually(anchored).await.is_some());
    // Record 6 is written, never synced, and half of it survives the power loss.
    faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(journal.append(payload(5)).await, Err(JournalError::Failed(_))));
    drop(journal);
    store.crash(RECORD_OVERHEAD + 3);
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    assert_eq!((recovered.records.len(), recovered.truncated.as_ref().map(|t| t.2)), (5, Some(6)));
    assert_eq!(journal.append(payload(5)).await.unwrap().seq, 6);
}

#[tokio::test]
async fn both_stores_hold_the_same_bytes_and_files_are_exactly_the_format() {
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let (files, memory) = (Backend::files(), Backend::memory());
    for b in [&files, &memory] {
        let (journal, _, _) = b.open(options.clone()).unwrap();
        append_n(&journal, 0..100).await;
    }
    let (files, memory) = (files.segments(), memory.segments());
    assert!(files.len() > 1 && files.len() == memory.len());
    for ((file_path, file), (_, mut mem)) in files.into_iter().zip(memory) {
        assert_eq!(file.len(), 4096, "{}", file_path.display());
        mem.resize(4096, 0);
        assert_eq!(file, mem, "{} differs between the stores", file_path.display());
    }
    // And the first segment is the format's header and records, then zeros: nothing else.
    let (_, file) = Backend::files().segment_after(options, 3).await;
    let mut expected = format::header(1).to_vec();
    let mut prev = [0; 32];
    for seq in 1..=3 {
        let hash = format::chain(&prev, seq, &payload(seq - 1));
        format::encode(&mut expected, seq, &hash, &payload(seq - 1));
        prev = hash;
    }
    expected.resize(4096, 0);
    assert_eq!(file, expected);
}

#[tokio::test]
async fn a_power_loss_loses_exactly_the_unsynced_records() {
    let store = MemoryStore::new();
    let (journal, _, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    let synced = journal.append(payload(5)).await.unwrap();
    drop(journal);
    let never = Options { sync: SyncPolicy::Never, ..Options::default() };
    let (journal, _, _) = Journal::open_store(store.clone(), never).unwrap();
    append_n(&journal, 6..10).await;
    drop(journal);

    // A process crash (the journal dropped) keeps everything written.
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 10);
    drop(journal);
    // A power loss keeps exactly what was synced: every record acknowledged with EveryBatch.
    store.crash(0);
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    assert_eq!((recovered.records.len(), recovered.head), (6, Some(synced)));
    assert!(recovered.truncated.is_none(), "a clean loss leaves no torn tail");
    let payloads: Vec<Vec<u8>> = recovered.entries().map(|(_, p)| p.to_vec()).collect();
    assert_eq!(payloads, (0..6).map(payload).collect::<Vec<_>>());
    assert_eq!(journal.append(payload(6)).await.unwrap().seq, 7);
}

#[tokio::test]
async fn a_power_loss_mid_write_leaves_a_torn_tail_that_recovery_cuts() {
    let store = MemoryStore::new();
    let faults = Arc::new(Faults::default());
    let options = Options { faults: Some(Arc::clone(&faults)), ..Options::default() };
    let (journal, _, _) = Journal::open_store(store.clone(), options).unwrap();
    append_n(&journal, 0..5).await;
    faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(journal.append(payload(5)).await, Err(JournalError::Failed(_))));
    drop(journal);
    let (first, bytes) = store.segments().swap_remove(0);
    let end = end_of_records(&bytes) - RECORD_OVERHEAD - payload(5).len();

    // The sixth record's header reached the medium, its payload did not.
    store.crash(RECORD_OVERHEAD + 3);
    let (journal, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 5);
    assert_eq!(recovered.truncated, Some((store.segment_path(first), end as u64, 6)));
    assert_eq!(journal.append(payload(5)).await.unwrap().seq, 6);
    drop(journal);
    let (_, recovered, _) = Journal::open_store(store.clone(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 6);
    assert!(recovered.truncated.is_none());
}

#[tokio::test]
async fn the_verify_command_prints_the_head_hash_and_names_damage() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("journal");
    let (journal, _, _) = Journal::open(&dir, Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    let head = journal.append(payload(5)).await.unwrap();
    drop(journal);
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
            .args(["journal", "verify", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap()
    };

    // The binary, as an auditor would run it.
    let out = verify();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("6 records verified"), "{text}");
    assert!(text.contains(&format!("head: record 6 hash {}", hex::encode(head.hash))), "{text}");
    assert!(text.contains(&format!("anchor: record 6 hash {}", hex::encode(head.hash))), "{text}");

    let store = FileStore::new(&dir);
    let seg = store.segment_path(1);
    let bytes = store.read(1).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&[9, 9, 9], end_of_records(&bytes) as u64).unwrap();
    assert!(String::from_utf8_lossy(&verify().stdout).contains("torn tail"));

    // Damage in the middle: the command fails and names the record.
    file.write_all_at(
        &[bytes[record_offsets(&bytes)[1] + RECORD_OVERHEAD] ^ 0x10],
        (record_offsets(&bytes)[1] + RECORD_OVERHEAD) as u64,
    )
    .unwrap();
    let out = verify();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(record 2)") && err.contains("refusing"), "{err}");
}

#[tokio::test]
async fn the_verify_command_fails_naming_a_lost_segment() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("journal");
    let (journal, _, _) = Journal::open(&dir, small_segments()).unwrap();
    append_n(&journal, 0..130).await;
    drop(journal);
    let verify = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
            .args(["journal", "verify", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(verify().0);

    let store = FileStore::new(&dir);
    let last = store.list().unwrap()[2];
    std::fs::remove_file(store.segment_path(last)).unwrap();
    let (ok, err) = verify();
    assert!(!ok, "verify passed a journal without its last segment");
    assert!(err.contains(&format!("{} is missing", store.segment_path(last).display())), "{err}");
    assert!(err.contains("records up to 130") && err.contains(&format!("records up to {}", last - 1)), "{err}");

    std::fs::remove_dir_all(&dir).unwrap();
    let (ok, err) = verify();
    assert!(!ok && err.contains("there is no segment at all"), "{err}");
}
