//! The fuzz targets (`emission_auction::fuzzing`) without a fuzzer: every file of the corpus
//! kept in `fuzz/corpus/<target>/` runs through its target, then a bounded run of random and
//! mutated inputs (`FUZZ_ITERATIONS`, default 2,000 per target). A crash found by a fuzzer is
//! added to the corpus, so it is checked here from then on. `UPDATE_FUZZ_CORPUS=1` writes the
//! seed inputs below into the corpus.

use std::path::{Path, PathBuf};

use emission_auction::domain::{AuctionId, BidId, CreditCode, Price, Quantity, Timestamp};
use emission_auction::engine::Command;
use emission_auction::fuzzing::TARGETS;
use emission_auction::journal::format;
use emission_auction::proto as pb;
use emission_auction::service::entry::Entry;
use prost::Message;

use crate::rng::Rng;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// Seed inputs, by target: valid and nearly valid examples of what each target reads.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&str, Vec<u8>)> = Vec::new();
    for text in ["18000.00", "0.001", "4.048", "1e5", "-1", "+1", "1_000", "00.10", "92233720368547758.07", "0.0000"] {
        out.push(("decimal", text.into()));
    }
    let code = CreditCode::with_check_digit("91140100MA0DEM001").unwrap().to_string();
    for text in [code.as_str(), "91140100MA0DEM001X", "140100", "AUC-0001", "12140000MB0CENTRE8", "9114010"] {
        out.push(("credit_code", text.into()));
    }
    let bidder = CreditCode::with_check_digit("91140100MA0DEM001").unwrap();
    let apply = Entry::Apply {
        at: Timestamp::from_micros(1_772_323_200_000_000),
        auction: AuctionId::new(1),
        command: Command::PlaceBid {
            bidder,
            bid: BidId::new(7),
            price: Price::from_units(1_800_000),
            quantity: Quantity::from_units(5_000),
            eligibility: None,
        },
        origin: None,
        settled: None,
    };
    let entries = [
        apply.clone(),
        Entry::Tick { at: Timestamp::from_micros(1), auction: AuctionId::new(1), settled: Some(1) },
        Entry::Sealed {
            at: Timestamp::from_micros(1),
            auction: AuctionId::new(2),
            nonce: [1; 24],
            ciphertext: vec![9; 40],
        },
        Entry::Unseal { auction: AuctionId::new(2), key: [3; 32] },
    ];
    for entry in &entries {
        out.push(("entry", entry.encode().unwrap()));
    }
    let mut segment = format::header(1).to_vec();
    let mut hash = [0u8; 32];
    for (seq, entry) in entries.iter().enumerate() {
        let payload = entry.encode().unwrap();
        format::encode(&mut segment, seq as u64 + 1, &hash, &payload);
        hash = format::chain(&hash, seq as u64 + 1, &payload);
    }
    out.push(("journal_record", segment[format::header(1).len()..].to_vec()));
    out.push(("journal_record", segment));
    let create = pb::CreateAuctionRequest {
        request_id: "c1".into(),
        lot: Some(pb::Lot {
            lot_id: "L1".into(),
            pollutant: 1,
            quantity: "20.000".into(),
            fill_unit: "1.000".into(),
            seller: "12140000MB0CENTRE8".into(),
            origin: 1,
            region_code: "140100".into(),
            vintage_year: 2025,
            valid_years: 5,
            ..Default::default()
        }),
        format: pb::AuctionFormat::SealedUniformPrice as i32,
        ..Default::default()
    };
    out.push(("grpc_request", create.encode_to_vec()));
    let bid = pb::PlaceBidRequest {
        request_id: "r1".into(),
        auction_id: "AUC-0001".into(),
        price: "18000.00".into(),
        quantity: "5.000".into(),
    };
    out.push(("grpc_request", bid.encode_to_vec()));
    let mut rng = Rng::new(12);
    for selector in 0..6u8 {
        let mut bytes = vec![selector];
        bytes.extend((0..120).map(|_| rng.below(256) as u8));
        out.push(("engine_commands", bytes));
    }
    out
}

#[test]
fn the_fuzz_corpus_and_a_bounded_random_run_pass_every_target() {
    if std::env::var_os("UPDATE_FUZZ_CORPUS").is_some() {
        for (n, (target, bytes)) in seeds().into_iter().enumerate() {
            let dir = corpus(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{n:03}")), bytes).unwrap();
        }
    }
    let iterations: u64 = std::env::var("FUZZ_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let mut rng = Rng::new(20_261_129);
    for (target, run) in TARGETS {
        let mut inputs: Vec<Vec<u8>> = seeds().into_iter().filter(|(t, _)| t == target).map(|(_, b)| b).collect();
        if let Ok(dir) = std::fs::read_dir(corpus(target)) {
            for file in dir {
                inputs.push(std::fs::read(file.unwrap().path()).unwrap());
            }
        }
        assert!(!inputs.is_empty(), "no corpus for {target}");
        for input in &inputs {
            run(input);
        }
        // Mutations of the corpus: flipped, inserted and cut bytes.
        for _ in 0..iterations {
            let mut input = inputs[rng.below(inputs.len() as u64) as usize].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(input.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if at < input.len() => input[at] ^= 1 << rng.below(8),
                    1 => input.insert(at, rng.below(256) as u8),
                    _ => input.truncate(at),
                }
            }
            run(&input);
        }
    }
}
