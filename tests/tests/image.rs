//! The operator's OCI image (`make image`: buildah from `scratch`, the statically linked
//! release binary) run with runc as a pod would run it, without a node: as uid 65532 with a
//! read-only root filesystem, no capabilities and no new privileges. `gatehouse --version`,
//! `gatehouse render` of every sample set (equal to the golden files), and `gatehouse run`
//! against a control plane of its own (ready, reconciling, stopping on SIGTERM); the test
//! backend image on its ports. The checks are `hack/images.sh verify` and `verify-run`; this
//! test runs them and reads what they report.

use std::process::Command;

use gatehouse_tests::chaos::OwnCluster;
use gatehouse_tests::root;

/// Runs `hack/images.sh ARGS`; panics with its output unless it succeeds. Returns stderr,
/// where the script reports each check.
fn images(args: &[&str]) -> String {
    let out = Command::new(root().join("hack/images.sh"))
        .args(args)
        .output()
        .expect("hack/images.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "hack/images.sh {args:?} failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!("{stderr}");
    stderr
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[test]
fn the_image_prints_its_version_and_renders_every_sample_as_uid_65532_read_only() {
    let log = images(&["verify"]);
    assert!(
        log.contains(&format!(
            "operator: --version as uid 65532, read-only root: gatehouse {}",
            version()
        )),
        "{log}"
    );
    let sets = gatehouse_tests::sample_sets();
    for set in &sets {
        let name = set.file_name().unwrap().to_string_lossy();
        assert!(
            log.contains(&format!(
                "operator: render -f /samples/{name} (read-only bind mount) = tests/golden/samples/{name}.yaml"
            )),
            "{name}: {log}"
        );
    }
    // The image is built from scratch with the release binary only, labelled as released.
    assert!(log.contains("\"User\":\"65532:65532\""), "{log}");
    assert!(
        log.contains(&format!(
            "\"org.opencontainers.image.version\":\"{}\"",
            version()
        )),
        "{log}"
    );
    assert!(log.contains("verified both images"), "{log}");
}

#[test]
fn the_image_runs_the_operator_against_a_control_plane_as_uid_65532_read_only() {
    let cluster = OwnCluster::start("image");
    let kubeconfig = cluster.dir.join("kubeconfig");
    let log = images(&["verify-run", kubeconfig.to_str().unwrap()]);
    for want in [
        "run: /readyz 200",
        "uid/gid 65532, CapEff 0000000000000000, root filesystem mounted ro",
        "run: reconciled ClusterNetwork gatehouse-image-check-",
        "ms after SIGTERM",
        "verified gatehouse run from the image",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
}
