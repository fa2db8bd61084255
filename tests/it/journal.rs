//! The journal's contract, run against both stores (real files and memory) through one
//! `Backend` helper: group commit, segments, recovery of torn tails, refusal on damaged synced
//! data, hash-chain tamper detection, and the failure contract under injected write, sync and
//! disk-full errors. Then what only one store can show: a simulated power loss on the memory
//! store, and the `journal verify` command on files.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use emission_auction::journal::format::{self, Decoded, HEADER_LEN, RECORD_OVERHEAD};
use emission_auction::journal::{
    Faults, FileStore, Journal, JournalError, MemoryStore, Options, Recovered, SegmentStore, Stats, SyncPolicy,
};

/// Where a test journal keeps its segments.
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

    /// Opens (recovering) the journal, as a restart would.
    fn open(&self, options: Options) -> Result<(Journal, Recovered, Arc<Stats>), JournalError> {
        match self {
            Backend::Files(dir) => Journal::open(dir.path(), options),
            Backend::Memory(store) => Journal::open_store(store.clone(), options),
        }
    }

    fn verify(&self) -> Result<Recovered, JournalError> {
        match self {
            Backend::Files(dir) => emission_auction::journal::verify(dir.path()),
            Backend::Memory(store) => emission_auction::journal::verify_store(store),
        }
    }

    /// Each segment's path, as the journal names it in errors, and its bytes.
    fn segments(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn read(store: &impl SegmentStore) -> Vec<(PathBuf, Vec<u8>)> {
            store.list().unwrap().into_iter().map(|f| (store.segment_path(f), store.read(f).unwrap())).collect()
        }
        match self {
            Backend::Files(dir) => read(&FileStore::new(dir.path())),
            Backend::Memory(store) => read(store),
        }
    }

    fn segment(&self, index: usize) -> (PathBuf, Vec<u8>) {
        self.segments().swap_remove(index)
    }

    /// Overwrites bytes of a segment behind the journal's back (a crash's leftovers, damage, a
    /// forger).
    fn overwrite(&self, index: usize, offset: usize, bytes: &[u8]) {
        match self {
            Backend::Files(_) => {
                let file = std::fs::OpenOptions::new().write(true).open(&self.segment(index).0).unwrap();
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

on_both_stores!(a_flipped_bit_in_the_last_record_is_a_torn_tail);
async fn a_flipped_bit_in_the_last_record_is_a_torn_tail(b: Backend) {
    let (journal, _, _) = b.open(Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    let last = *record_offsets(&b.segment(0).1).last().unwrap();
    b.flip_bit(0, last + RECORD_OVERHEAD + 3);
    let (_, recovered, _) = b.open(Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 9);
    assert_eq!(recovered.truncated.as_ref().map(|t| t.2), Some(10));
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
    match &b {
        Backend::Files(dir) => FileStore::new(dir.path()).start_segment(11, &[0; HEADER_LEN], 4096).unwrap(),
        Backend::Memory(store) => store.clone().start_segment(11, &[0; HEADER_LEN], 4096).unwrap(),
    }
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
