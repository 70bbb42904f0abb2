//! `make demo`, the main job, end to end on a control plane of its own with the real
//! controllers: it must finish with every sample object Ready, show certificates that verify
//! against the stack's CA, addresses MetalLB assigned, and BIND answering the sample's hosts.

use std::process::Command;

use gatehouse_tests::root;

// Run by `make test` in a phase of its own, before the shared cluster starts: the demo makes
// a cluster with a node, and a machine has room for one node (hack/test.sh).
#[test]
#[ignore = "make test runs it alone first (hack/test.sh): it needs the machine's one node"]
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
    for component in ["CERT_MANAGER_BIN", "METALLB_BIN", "EXTERNAL_DNS_BIN"] {
        assert!(
            std::env::var_os(component).is_some(),
            "{component} is not set: run through `make test`"
        );
    }
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
    // The node: the operator runs from the local image under its chart, the set's
    // workloads as real pods, all Ready.
    assert!(
        stdout.contains("operator image: gatehouse.local/gatehouse:")
            && stdout.contains("deployment \"gatehouse\" successfully rolled out")
            && stdout.contains("all pods Ready"),
        "the operator and the workloads run on the node:\n{stdout}"
    );
    // Real results, as the demo prints them (metallb-oauth2-openwrt, the default set).
    assert!(
        stdout.contains("chain: OK") && !stdout.contains("chain: error"),
        "certificates verify against the CA:\n{stdout}"
    );
    assert!(
        stdout.contains("assigned by the real MetalLB controller")
            && stdout.contains("ingress-nginx/default-external: 192.168.0.3"),
        "MetalLB assigned the requested address:\n{stdout}"
    );
    let dig_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("app1.k8s.example.com") && l.contains(" -> "))
        .collect();
    // External DNS publishes the router's public address (the tier's `publish`), never the
    // LAN address MetalLB assigned; internal DNS the LAN address.
    assert!(
        dig_lines
            .iter()
            .any(|l| l.contains("external") && l.contains("203.0.113.7"))
            && !dig_lines
                .iter()
                .any(|l| l.contains("external") && l.contains("192.168."))
            && dig_lines
                .iter()
                .any(|l| l.contains("internal") && l.contains("192.168.0.5")),
        "BIND answers per tier (split horizon): {dig_lines:?}\n{stdout}"
    );
    // Split horizon (dns.internal.publishExternalHosts): LAN clients resolve the external-only
    // app2 to the external load balancer's LAN address.
    assert!(
        stdout.lines().any(|l| l.contains("internal")
            && l.contains("app2.k8s.example.com")
            && l.contains("192.168.0.3")),
        "internal BIND answers app2 with the external tier's LAN address:\n{stdout}"
    );
    // Real requests through BIND-resolved names and each tier's Traefik: an https answer
    // from a pod, the http redirect, and the sign-in redirect to the issuer.
    let requests = stdout
        .split("Real requests:")
        .nth(1)
        .and_then(|r| r.split("Status of one ExposedApp").next())
        .unwrap_or_default();
    let blocks: Vec<&str> = requests.split("\n-- ").skip(1).collect();
    let block = |what: &str| {
        blocks
            .iter()
            .find(|b| b.starts_with(what))
            .copied()
            .unwrap_or_default()
    };
    let answer = block("the answer of a pod");
    assert!(
        answer.contains(" 200") && answer.contains("grafana-backend-"),
        "an https answer from the grafana pod:\n{requests}"
    );
    let redirect = block("redirect to https");
    assert!(
        (redirect.contains(" 301") || redirect.contains(" 308"))
            && redirect.contains("https://grafana.k8s.example.com/"),
        "a permanent redirect to https:\n{requests}"
    );
    let sign_in = block("sign-in redirect");
    assert!(
        sign_in.contains(" 302") && sign_in.contains("/oidc/authorize?"),
        "a redirect into the OIDC sign-in:\n{requests}"
    );
}
