//! Every error path of render: each file under `fixtures/errors/` starts with one or more
//! `# expect: <line>` comments; rendering it must fail with exactly those error lines (after
//! `fixtures/errors/` is stripped from the path), in that order.

use std::path::Path;

use gatehouse_operator::render_cmd::render_paths;

#[test]
fn every_error_fixture_fails_with_its_message() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors");
    let mut files: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the error fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let out = render_paths(std::slice::from_ref(file));
        let prefix = format!("{}/", base.display());
        let actual: Vec<String> = out.errors.iter().map(|e| e.replace(&prefix, "")).collect();
        if actual != expected {
            failures.push(format!(
                "{}:\n  expected {expected:#?}\n  got      {actual:#?}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
