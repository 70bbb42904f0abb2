//! The Multus attachments of the home-multus-traefik sample (seed 001) with the real CNI
//! plugins (Debian's containernetworking-plugins: macvlan, host-local, static), called as
//! Multus calls them: the NetworkAttachmentDefinition's config Gatehouse renders, plus the
//! runtimeConfig libcni builds from the pod annotation Gatehouse's webhook injects (a key
//! only for a capability the config declares), on a network namespace that stands for the
//! pod (with an `eth0` and default route standing for the pod network) and a master
//! interface the test creates. The pod must get the pinned address and MAC, and the
//! declared routes: the world through the DMZ router, 10.0.0.0/8 still on the pod network.
//! Needs root (network namespaces, links), as the node does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use gatehouse_operator::{input, render, webhook};
use gatehouse_tests::root;
use serde_json::{Value, json};

const CNI_PATH: &str = "/usr/lib/cni";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run("ip", args)
}

/// A pod stand-in: a network namespace with `eth0` (a veth into the host) carrying the
/// "pod network" address 10.42.0.5/24 and its default route via 10.42.0.1, and the
/// attachment's master interface (a dummy link) in the host. Removed on drop.
struct Pod {
    netns: String,
    links: Vec<String>,
}

impl Pod {
    fn new(tag: &str, masters: &[&str]) -> Pod {
        let netns = format!("gh-cni-{tag}-{}", std::process::id());
        let host_end = format!("ghv{}{}", &tag[..1], std::process::id() % 100_000);
        ip(&["netns", "add", &netns]);
        let mut pod = Pod {
            netns: netns.clone(),
            links: vec![host_end.clone()],
        };
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &host_end, "up"]);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "eth0", "up"],
            vec!["addr", "add", "10.42.0.5/24", "dev", "eth0"],
            vec!["route", "add", "default", "via", "10.42.0.1", "dev", "eth0"],
        ] {
            let mut a = vec!["-n", netns.as_str()];
            a.extend(args);
            ip(&a);
        }
        // The master: one end of a veth pair (this kernel has no dummy links; macvlan sits
        // on a veth as on a VLAN interface).
        for m in masters {
            let peer = format!("{m}p");
            ip(&["link", "add", m, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", m, "up"]);
            ip(&["link", "set", &peer, "up"]);
            pod.links.push(m.to_string());
        }
        pod
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// `ip -j` output inside the pod, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-n", self.netns.as_str(), "-j"];
        a.extend(args);
        serde_json::from_str(&ip(&a)).unwrap()
    }

    /// The interface and next hop the pod's kernel picks for `dst`.
    fn route_to(&self, dst: &str) -> (String, String) {
        let r = &self.json(&["route", "get", dst])[0];
        (
            r["dev"].as_str().unwrap_or_default().to_string(),
            r["gateway"].as_str().unwrap_or_default().to_string(),
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    }
}

/// Calls a CNI plugin as libcni does: the config on stdin, the rest in the environment.
fn cni(command: &str, config: &Value, pod: &Pod, ifname: &str, k8s: (&str, &str)) -> Value {
    let plugin = Path::new(CNI_PATH).join(config["type"].as_str().unwrap());
    let mut child = Command::new(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.netns)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_PATH)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=true;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                k8s.0, k8s.1
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", plugin.display()));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {command}: {}{}",
        plugin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What Multus hands a delegate: the attachment's config plus, per capability it declares,
/// the value from the pod's network selection entry (libcni's runtimeConfig).
fn delegate(config: &str, selection: &Value) -> Value {
    let mut config: Value = serde_json::from_str(config).unwrap();
    let mut runtime = serde_json::Map::new();
    for cap in ["ips", "mac"] {
        if config["capabilities"][cap] == json!(true) && !selection[cap].is_null() {
            runtime.insert(cap.to_string(), selection[cap].clone());
        }
    }
    if !runtime.is_empty() {
        config["runtimeConfig"] = Value::Object(runtime);
    }
    config
}

struct Sample {
    inputs: input::Inputs,
    children: Vec<render::Child>,
}

fn sample() -> Sample {
    let set: PathBuf = root().join("config/samples/home-multus-traefik");
    let inputs = input::load(&[set]).expect("sample loads");
    let children = gatehouse_tests::sets::render_all(&inputs);
    Sample { inputs, children }
}

impl Sample {
    /// The network selection entries the webhook puts on a pod of app `ns/name`.
    fn selection(&self, ns: &str, name: &str) -> Vec<Value> {
        let app = self
            .inputs
            .apps
            .iter()
            .map(|(_, a)| a)
            .find(|a| {
                a.metadata.namespace.as_deref() == Some(ns)
                    && a.metadata.name.as_deref() == Some(name)
            })
            .unwrap();
        let pod = json!({"metadata": {"labels": app.spec.selector}});
        let apps: Vec<Arc<gatehouse_api::ExposedApp>> = self
            .inputs
            .apps
            .iter()
            .map(|(_, a)| Arc::new(a.clone()))
            .collect();
        let patch = webhook::pod_patch(&pod, ns, &apps).expect("the webhook annotates the pod");
        let value = &patch[0]["value"];
        let text = value
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                value[gatehouse_api::labels::MULTUS_NETWORKS]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The rendered NetworkAttachmentDefinition's CNI config.
    fn nad_config(&self, ns: &str, name: &str) -> String {
        let nad = self
            .children
            .iter()
            .find(|c| {
                c.kind == render::ChildKind::NetworkAttachmentDefinition
                    && c.namespace() == Some(ns)
                    && c.name() == name
            })
            .unwrap_or_else(|| panic!("no NetworkAttachmentDefinition {ns}/{name}"));
        nad.object["spec"]["config"].as_str().unwrap().to_string()
    }
}

/// Attaches app `ns/name` to its one network with the real plugin and checks what the pod
/// got; returns the address net1 has.
fn attach_and_check(
    s: &Sample,
    tag: &str,
    ns: &str,
    name: &str,
    strip_ips_capability: bool,
) -> String {
    let selection = s.selection(ns, name);
    assert_eq!(selection.len(), 1, "{ns}/{name}: {selection:?}");
    let entry = &selection[0];
    let mut config = s.nad_config(ns, entry["name"].as_str().unwrap());
    if strip_ips_capability {
        // The render before this fix: host-local without the `ips` capability.
        let mut v: Value = serde_json::from_str(&config).unwrap();
        v["capabilities"].as_object_mut().unwrap().remove("ips");
        config = v.to_string();
    }
    let config = delegate(&config, entry);
    let master = config["master"].as_str().unwrap().to_string();
    let pod = Pod::new(tag, &[&master]);
    let result = cni("ADD", &config, &pod, "net1", (ns, name));
    let link = &pod.json(&["addr", "show", "dev", "net1"])[0];
    let addrs: Vec<String> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    let got = addrs.first().cloned().unwrap_or_default();
    if !strip_ips_capability {
        assert_eq!(
            addrs,
            entry["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
            "{ns}/{name}: the pinned address (plugin result {result})"
        );
        assert_eq!(link["address"], entry["mac"], "{ns}/{name}: the pinned MAC");
        // The declared routes: the world through the attachment's gateway, the cluster's
        // own 10/8 still through the pod network's default route.
        let gw = config["ipam"]["routes"][0]["gw"]
            .as_str()
            .unwrap()
            .to_string();
        for world in ["1.1.1.1", "9.9.9.9", "172.16.0.1", "203.0.113.7"] {
            assert_eq!(
                pod.route_to(world),
                ("net1".into(), gw.clone()),
                "{ns}/{name}: {world}"
            );
        }
        for cluster in ["10.42.1.7", "10.43.0.10"] {
            assert_eq!(
                pod.route_to(cluster),
                ("eth0".into(), "10.42.0.1".into()),
                "{ns}/{name}: {cluster}"
            );
        }
        println!(
            "{ns}/{name}: net1 {addrs:?} mac {} ; 1.1.1.1 via {gw} dev net1, 10.43.0.10 via 10.42.0.1 dev eth0",
            link["address"].as_str().unwrap()
        );
    }
    cni("DEL", &config, &pod, "net1", (ns, name));
    got
}

#[test]
fn the_real_cni_plugins_give_each_pod_its_pinned_address_mac_and_routes() {
    assert!(
        Path::new(CNI_PATH).join("macvlan").exists(),
        "{CNI_PATH}/macvlan missing: make node-deps installs containernetworking-plugins"
    );
    let s = sample();
    // Traefik on dmz-net (macvlan, host-local, pinned .15 and a MAC).
    attach_and_check(&s, "t", "traefik", "traefik-dmz", false);
    // WordPress on dmz-out (macvlan, static IPAM, pinned .13 and a MAC).
    attach_and_check(&s, "w", "wordpress", "wordpress", false);
    // What the `ips` capability is for: without it libcni drops the pinned address and
    // host-local hands out the first free one of the range instead.
    let without = attach_and_check(&s, "x", "traefik", "traefik-dmz", true);
    assert_ne!(
        without, "192.168.29.15/24",
        "host-local honoured ips without the capability?"
    );
    println!("without the ips capability host-local gave {without}");
}
