//! `make demo`, the main job, end to end on a control plane of its own: it must finish with
//! every sample object Ready.

use std::process::Command;

use gatehouse_tests::root;

#[test]
fn the_demo_ends_with_everything_ready() {
    let Some(bin) = std::env::var_os("CONTROLPLANE_BIN") else {
        panic!("CONTROLPLANE_BIN is not set: run through `make test`");
    };
    let dir = std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id()));
    let out = Command::new(root().join("hack/demo.sh"))
        .env("CLUSTER_DIR", &dir)
        .env("CONTROLPLANE_BIN", bin)
        .env("CLUSTER_WATCH_PID", std::process::id().to_string())
        .output()
        .unwrap();
    let _ = Command::new(root().join("hack/cluster-down.sh"))
        .env("CLUSTER_DIR", &dir)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all Ready after"), "{stdout}");
    let table = stdout
        .split("kubectl get gatehouse -A")
        .nth(1)
        .unwrap_or_default();
    assert!(
        table.contains("exposedapp.gatehouse.dev/app1") && table.contains("True"),
        "{stdout}"
    );
}
