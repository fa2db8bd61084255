//! The journal's storage engine against real files: group commit, segments, recovery of torn
//! tails, refusal on damaged synced data, hash-chain tamper detection, and the failure contract
//! under injected write, fsync and disk-full errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use emission_auction::journal::format::{self, Decoded, HEADER_LEN};
use emission_auction::journal::{Faults, FileJournal, JournalError, Options, SyncPolicy};

fn payload(n: u64) -> Vec<u8> {
    format!("{{\"command\":\"place_bid\",\"n\":{n}}}").into_bytes()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in one segment file.
fn record_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN;
    while let Decoded::Record { len, .. } = format::decode(&bytes[at..]) {
        offsets.push(at);
        at += len;
    }
    offsets
}

async fn append_n(journal: &FileJournal, range: std::ops::Range<u64>) {
    for n in range {
        journal.append(payload(n)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_and_recovered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, recovered, stats) = FileJournal::open(dir.path(), Options::default()).unwrap();
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

    let (_journal, recovered, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 3200);
    assert!(recovered.records.iter().enumerate().all(|(i, r)| r.at.seq == i as u64 + 1));
    let payloads: BTreeSet<Vec<u8>> = recovered.entries().map(|(_, p)| p.to_vec()).collect();
    let sent: BTreeSet<Vec<u8>> = (0..64u64).flat_map(|t| (0..50).map(move |i| payload(t * 1000 + i))).collect();
    assert_eq!(payloads, sent);
    assert_eq!(recovered.head, Some(head), "the recovered head hash is the last acknowledged one");
    assert!(recovered.truncated.is_none());
}

#[tokio::test]
async fn segments_roll_and_recovery_continues_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 4096, ..Options::default() };
    let (journal, _, _) = FileJournal::open(dir.path(), options.clone()).unwrap();
    append_n(&journal, 0..300).await;
    drop(journal);
    let files = segment_files(dir.path());
    assert!(files.len() > 3, "expected several 4 KiB segments, got {}", files.len());
    for f in &files {
        assert_eq!(std::fs::metadata(f).unwrap().len(), 4096, "segments are preallocated to full size");
    }
    let (journal, recovered, _) = FileJournal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(recovered.records.len(), 300);
    assert_eq!(journal.append(payload(300)).await.unwrap().seq, 301);
    drop(journal);
    let (_, recovered, _) = FileJournal::open(dir.path(), options).unwrap();
    let last = recovered.records.last().unwrap();
    assert_eq!((last.at.seq, recovered.payload(last)), (301, &payload(300)[..]));
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_appending_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    // A crash mid-batch: half of an eleventh record reached the disk.
    let seg = &segment_files(dir.path())[0];
    let end = record_offsets(seg).last().map(|o| o + format::RECORD_OVERHEAD + payload(9).len()).unwrap();
    let mut torn = Vec::new();
    format::encode(&mut torn, 11, &[7; 32], &payload(10));
    let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &torn[..torn.len() / 2], end as u64).unwrap();

    let (journal, recovered, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 10);
    let (path, offset, seq) = recovered.truncated.clone().unwrap();
    assert_eq!((&path, offset as usize, seq), (seg, end, 11));
    assert_eq!(journal.append(payload(10)).await.unwrap().seq, 11);
    drop(journal);
    let (_, recovered, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 11);
    assert!(recovered.truncated.is_none());
}

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_flipped_bit_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    let seg = &segment_files(dir.path())[0];
    let last = *record_offsets(seg).last().unwrap();
    flip_bit(seg, last + format::RECORD_OVERHEAD + 3);
    let (_, recovered, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(recovered.records.len(), 9);
    assert_eq!(recovered.truncated.as_ref().map(|t| t.2), Some(10));
}

#[tokio::test]
async fn a_flipped_bit_in_the_middle_refuses_to_start_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    append_n(&journal, 0..10).await;
    drop(journal);
    let seg = &segment_files(dir.path())[0];
    let third = record_offsets(seg)[2];
    flip_bit(seg, third + format::RECORD_OVERHEAD + 1);
    let before = std::fs::read(seg).unwrap();
    match FileJournal::open(dir.path(), Options::default()) {
        Err(JournalError::Corrupt { segment, offset, seq, .. }) => {
            assert_eq!((segment.as_str(), offset as usize, seq), (seg.to_str().unwrap(), third, 3));
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("opened a journal whose synced data is damaged"),
    }
    assert_eq!(std::fs::read(seg).unwrap(), before, "refusing must not change the journal");
}

#[tokio::test]
async fn rewriting_a_record_with_a_fresh_crc_breaks_the_hash_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    drop(journal);
    let seg = &segment_files(dir.path())[0];
    let second = record_offsets(seg)[1];
    // A forger rewrites record 2 with a different payload of the same length and a valid CRC,
    // keeping its old chain hash.
    let mut bytes = std::fs::read(seg).unwrap();
    let Decoded::Record { hash, .. } = format::decode(&bytes[second..]) else { panic!() };
    let forged_payload = payload(1).iter().map(|b| if *b == b'1' { b'7' } else { *b }).collect::<Vec<u8>>();
    let mut forged = Vec::new();
    format::encode(&mut forged, 2, &hash, &forged_payload);
    bytes[second..second + forged.len()].copy_from_slice(&forged);
    std::fs::write(seg, bytes).unwrap();
    match FileJournal::open(dir.path(), Options::default()) {
        Err(JournalError::Corrupt { seq, reason, .. }) => {
            assert_eq!((seq, reason.as_str()), (2, "sequence or hash chain broken"))
        }
        other => panic!("forgery went unnoticed: {:?}", other.map(|_| ())),
    }
}

async fn failure_contract(inject: impl Fn(&Faults)) {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let options = Options { faults: Some(Arc::clone(&faults)), ..Options::default() };
    let (journal, _, _) = FileJournal::open(dir.path(), options).unwrap();
    append_n(&journal, 0..5).await;
    inject(&faults);
    assert!(matches!(journal.append(payload(5)).await, Err(JournalError::Failed(_))));
    // Even once the fault is gone, nothing more is acknowledged until the journal is reopened.
    faults.fail_writes.store(false, Ordering::SeqCst);
    faults.fail_syncs.store(false, Ordering::SeqCst);
    faults.disk_full_at.store(0, Ordering::SeqCst);
    assert!(matches!(journal.append(payload(6)).await, Err(JournalError::Failed(_))));
    drop(journal);
    let (journal, recovered, _) = FileJournal::open(dir.path(), Options::default()).unwrap();
    // The five acknowledged records are there; the failed append may or may not have reached
    // the disk (it was never acknowledged), and nothing after it.
    assert!(recovered.records.len() == 5 || recovered.records.len() == 6, "{} records", recovered.records.len());
    let first: Vec<(u64, Vec<u8>)> = recovered.entries().take(5).map(|(at, p)| (at.seq, p.to_vec())).collect();
    assert_eq!(first, (0..5).map(|n| (n + 1, payload(n))).collect::<Vec<_>>());
    assert!(journal.append(payload(7)).await.is_ok(), "a reopened journal accepts appends again");
}

#[tokio::test]
async fn an_fsync_error_stops_all_acknowledgements() {
    failure_contract(|f| f.fail_syncs.store(true, Ordering::SeqCst)).await;
}

#[tokio::test]
async fn a_write_error_stops_all_acknowledgements() {
    failure_contract(|f| f.fail_writes.store(true, Ordering::SeqCst)).await;
}

#[tokio::test]
async fn a_full_disk_stops_all_acknowledgements() {
    failure_contract(|f| f.disk_full_at.store(HEADER_LEN as u64 + 1, Ordering::SeqCst)).await;
}

#[tokio::test]
async fn without_sync_nothing_is_fdatasynced() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _, stats) =
        FileJournal::open(dir.path(), Options { sync: SyncPolicy::Never, ..Options::default() }).unwrap();
    append_n(&journal, 0..20).await;
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 0);
    assert_eq!(stats.records.load(Ordering::Relaxed), 20);
}

#[tokio::test]
async fn verify_reports_without_repairing_and_the_command_prints_the_head_hash() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("journal");
    let (journal, _, _) = FileJournal::open(&dir, Options::default()).unwrap();
    append_n(&journal, 0..5).await;
    let head = journal.append(payload(5)).await.unwrap();
    drop(journal);

    // The binary, as an auditor would run it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(["journal", "verify", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("6 records verified"), "{text}");
    assert!(text.contains(&format!("head: record 6 hash {}", hex::encode(head.hash))), "{text}");

    // A torn tail is reported, and the file is left exactly as it was.
    let seg = &segment_files(&dir)[0];
    let end = *record_offsets(seg).last().unwrap() + format::RECORD_OVERHEAD + payload(5).len();
    let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[9, 9, 9], end as u64).unwrap();
    let before = std::fs::read(seg).unwrap();
    let verified = emission_auction::journal::verify(&dir).unwrap();
    assert_eq!(verified.records.len(), 6);
    assert_eq!(verified.truncated.as_ref().map(|t| (t.1 as usize, t.2)), Some((end, 7)));
    assert_eq!(std::fs::read(seg).unwrap(), before, "verify must not change the journal");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(["journal", "verify", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("torn tail"));

    // Damage in the middle: the command fails and names the record.
    flip_bit(seg, record_offsets(seg)[1] + format::RECORD_OVERHEAD);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(["journal", "verify", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(record 2)") && err.contains("refusing"), "{err}");
}
