//! Any bytes given to the configuration loader produce a config or located errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portico::snapshot::compile_str("fuzz.yaml", text);
    }
});
