//! What the generated-file tests (golden.rs, setup_docs.rs) share: where the repository is,
//! whether `make golden`/`make docs` asked them to rewrite, and sorted directory listings.

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// GATEHOUSE_UPDATE_GOLDEN is set: rewrite the expected files instead of comparing.
pub fn updating() -> bool {
    std::env::var_os("GATEHOUSE_UPDATE_GOLDEN").is_some()
}

/// The entries of `dir` that `keep` accepts, sorted.
pub fn sorted(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| keep(p))
        .collect();
    v.sort();
    v
}
