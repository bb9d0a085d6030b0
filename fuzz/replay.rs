//! Shared by the corpus replay tests of lens-core and lens-models (included with `#[path]`): a fuzz
//! target's committed corpus, replayed, then mutated ([`lens_core::fuzzing::mutations`]).

use std::path::PathBuf;

/// Every input of `target`'s corpus (`fuzz/corpus/<target>/`), then `count` random mutations of them.
pub fn replay_and_mutate(target: &str, count: usize, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(inputs.len() >= 2, "{}: {} inputs", dir.display(), inputs.len());
    for input in &inputs {
        run(input);
    }
    if let Err(failing) = lens_core::fuzzing::mutations(&inputs, count, 0x5eed, run) {
        let path = std::env::temp_dir().join(format!("lens-fuzz-{target}-failure"));
        std::fs::write(&path, &failing).unwrap();
        panic!("{target}: a mutated input failed; it is in {} (add it to the corpus)", path.display());
    }
}
