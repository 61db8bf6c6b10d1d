#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet_fuzz::vary(data));
