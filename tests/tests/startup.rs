//! Without the Gatehouse CRDs the operator refuses to start with a message that says what
//! to do. Runs against a second, CRD-less control plane of its own (started and stopped here).

use std::path::PathBuf;
use std::process::Command;

use gatehouse_tests::root;
use kube::config::{KubeConfigOptions, Kubeconfig};

struct SecondCluster(PathBuf);

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("hack/cluster-down.sh"))
            .env("CLUSTER_DIR", &self.0)
            .output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_operator_refuses_to_start_without_the_crds() {
    let Some(bin) = std::env::var_os("CONTROLPLANE_BIN") else {
        panic!("CONTROLPLANE_BIN is not set: run through `make test`");
    };
    let dir = std::env::temp_dir().join(format!("gatehouse-nocrd-{}", std::process::id()));
    let cluster = SecondCluster(dir.clone());
    let out = Command::new(root().join("hack/cluster-up.sh"))
        .env("CLUSTER_DIR", &dir)
        .env("CONTROLPLANE_BIN", bin)
        .env("CRDS_BEFORE_KCM", "0")
        // The shared cluster already runs the machine's one node; this one needs none.
        .env("CLUSTER_NODE", "0")
        .env("CLUSTER_WATCH_PID", std::process::id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "second cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let err = gatehouse_operator::reconcile::check_crds(&client)
        .await
        .expect_err("no CRDs, no start");
    let message = err.to_string();
    assert!(
        message.contains("CRDs are not installed") && message.contains("config/crd"),
        "{message}"
    );
    drop(cluster);
}
