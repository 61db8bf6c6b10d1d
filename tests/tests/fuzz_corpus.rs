//! Replays every committed fuzzing corpus file (`fuzz/corpus/<target>/`) through the same
//! property checks the cargo-fuzz targets run (`fuzz/src/lib.rs`), so CI checks the corpora and
//! every input a fuzzing run found interesting without cargo-fuzz or a nightly toolchain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

#[allow(unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn replay(target: &str) -> usize {
    let (_, check) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            eprintln!("the corpus file {} fails {target}", path.display());
            resume_unwind(panic);
        }
    }
    files.len()
}

#[test]
fn every_corpus_folder_is_a_target_with_inputs() {
    let mut folders: Vec<String> = std::fs::read_dir(corpus_root())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut targets: Vec<String> = harness::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    targets.sort();
    assert_eq!(folders, targets, "one corpus folder per fuzz target");
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let replayed = replay(stringify!($target));
            assert!(replayed >= 5, "only {replayed} corpus files for {}", stringify!($target));
        }
    )*};
}

replay_tests!(
    tenant_id,
    resolve_host,
    resolve_path,
    resolve_jwt,
    cache_control,
    vary,
    http_date,
    decode_entry,
);
