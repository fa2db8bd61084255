#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| emission_auction::fuzzing::engine_commands(data));
