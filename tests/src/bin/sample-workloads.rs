//! `sample-workloads DIR`: prints, as a JSON List for `kubectl apply -f -`, the Deployments
//! that run a sample set's workloads on the node (one backend pod per ExposedApp, see
//! `gatehouse_tests::workloads`). `make demo` uses it, so the demo and the tests run the
//! same workloads.

use std::io::Write;

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: sample-workloads <sample set directory>");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if !dir.is_dir() {
        eprintln!("sample-workloads: {} is not a directory", dir.display());
        std::process::exit(2);
    }
    let items = gatehouse_tests::workloads(&gatehouse_tests::sample_objects(&dir));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&list).unwrap()
    );
}
