//! Golden tests of the pure renderer: each fixture directory under `fixtures/render/<case>/`
//! holds `input.yaml` and the whole expected output `expected.yaml`; each sample set under
//! `config/samples/<set>/` renders to `tests/golden/samples/<set>.yaml`.
//! `make golden` (GATEHOUSE_UPDATE_GOLDEN=1) rewrites the expected files; review the diff.

use std::path::{Path, PathBuf};

use gatehouse_operator::render_cmd::{Format, format, format_listeners, render_paths};

mod common;
use common::{root, sorted, updating};

/// Renders `input` and compares stdout-equivalent output plus notes with `expected`.
fn check(input: &Path, expected: &Path) -> Result<(), String> {
    let out = render_paths(&[input.to_path_buf()]);
    if !out.errors.is_empty() {
        return Err(format!(
            "{}: render failed:\n{}",
            input.display(),
            out.errors.join("\n")
        ));
    }
    let mut actual = String::new();
    for note in &out.notes {
        // Notes go to stderr in the CLI; keep them in the golden file as comments so a
        // change in what is pending shows up in review too.
        let note = note.replace(&format!("{}/", root().display()), "");
        actual.push_str(&format!("# note: {note}\n"));
    }
    actual.push_str(&format(&out.children, Format::Yaml));
    actual.push_str(&format_listeners(&out.listeners));
    if updating() {
        std::fs::write(expected, &actual).unwrap();
        return Ok(());
    }
    let want = std::fs::read_to_string(expected)
        .map_err(|e| format!("{}: {e} (run make golden)", expected.display()))?;
    if want != actual {
        let diff: Vec<String> = want
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}: expected {a:?}\n          got      {b:?}", i + 1))
            .collect();
        return Err(format!(
            "{} differs from the rendering of {} ({} vs {} lines):\n{}",
            expected.display(),
            input.display(),
            want.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        ));
    }
    Ok(())
}

fn dirs(path: &Path) -> Vec<PathBuf> {
    sorted(path, Path::is_dir)
}

#[test]
fn render_fixtures_match_expected() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let cases = dirs(&base);
    assert!(
        cases.len() >= 10,
        "expected the render fixture cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(&c.join("input.yaml"), &c.join("expected.yaml")).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn samples_match_golden() {
    let sets = dirs(&root().join("config/samples"));
    assert_eq!(
        sets.len(),
        6,
        "one sample set per seed setup, and seed 002 migrated to the Gateway API"
    );
    let failures: Vec<String> = sets
        .iter()
        .filter_map(|s| {
            let name = s.file_name().unwrap().to_string_lossy().to_string();
            check(
                s,
                &root()
                    .join("tests/golden/samples")
                    .join(format!("{name}.yaml")),
            )
            .err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
