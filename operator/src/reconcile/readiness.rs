//! Pure readiness: what each desired child's live state says, as a typed value, and the
//! detail conditions (CertificateReady, AddressAssigned, DNSPublished) read from those
//! values. No I/O: the live state comes in from the caches.

use gatehouse_api::{Reason, ResourceStatus};
use serde_json::Value;

use super::plan::Outcome;
use super::status::Detail;
use crate::render::{Child, ChildKind, Finding, Owner};

/// Whether a child does what it is for, and if not, what it waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Waiting(Wait),
}

/// What a child that is not ready waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Written moments ago and not seen by the watch yet: its status cannot be read, and
    /// the watch event the write causes brings the next reconcile.
    JustWritten,
    /// A LoadBalancer Service the load-balancer controller has not given an address yet.
    Address,
    /// A Certificate cert-manager has not reported on yet.
    NotIssued,
    /// A Certificate being issued (cert-manager's Issuing=True, with its message): the
    /// Secret still holds the old certificate, if any.
    Issuing(String),
    /// Ready, but judged for an older generation: the spec changed and a reissue is due.
    Reissuing,
    /// Ready=False, with cert-manager's reason and message.
    CertificateNotReady { reason: String, message: String },
    /// A DNSEndpoint external-dns has not read at its current generation.
    DnsNotPublished,
    /// An HTTPRoute the Gateway's implementation has not reported on for this parent
    /// (listener) at the route's current generation.
    RouteNotReported { parent: String },
    /// An HTTPRoute a parent did not accept, or whose references it could not resolve:
    /// the condition, with the implementation's reason and message.
    RouteNotAccepted {
        parent: String,
        condition: String,
        reason: String,
        message: String,
    },
}

impl Wait {
    /// The message `status.resources[].message` carries.
    pub fn message(&self) -> String {
        match self {
            Wait::JustWritten => "just written".into(),
            Wait::Address => "waiting for a load-balancer address".into(),
            Wait::NotIssued => "not issued yet".into(),
            Wait::Issuing(message) => format!("Issuing: {message}"),
            Wait::Reissuing => "reissuing for the changed spec".into(),
            Wait::CertificateNotReady { reason, message } => format!("{reason}: {message}"),
            Wait::DnsNotPublished => "not published by external-dns yet".into(),
            Wait::RouteNotReported { parent } => {
                format!("not reported by the Gateway yet for {parent}")
            }
            Wait::RouteNotAccepted {
                parent,
                condition,
                reason,
                message,
            } => format!("{parent}: {condition} {reason}: {message}"),
        }
    }
}

/// What the caches hold of a live child.
#[derive(Clone, Copy, Debug)]
pub enum Seen<'a> {
    /// Not in the cache (yet).
    Absent,
    /// In a metadata-only cache: it exists, its status is not cached.
    Exists,
    /// In a full cache: its whole content.
    Content(&'a Value),
}

/// Readiness of one desired child from what the caches hold of it. LoadBalancer Services
/// need an address, Certificates a Ready condition for the current generation and no
/// issuance in flight, DNSEndpoints an observedGeneration that caught up (external-dns
/// writes it when its source has read the generation, just before it sends the records to
/// the provider); every other kind is ready once it exists.
pub fn of(child: &Child, seen: Seen<'_>) -> Readiness {
    let is_lb = |v: &Value| v["spec"]["type"] == "LoadBalancer";
    let live = match seen {
        Seen::Absent => {
            return match child.kind {
                kind if kind.ready_by_status() => Readiness::Waiting(Wait::JustWritten),
                ChildKind::Service if is_lb(&child.object) => Readiness::Waiting(Wait::Address),
                _ => Readiness::Ready,
            };
        }
        Seen::Exists => return Readiness::Ready,
        Seen::Content(live) => live,
    };
    let waiting = Readiness::Waiting;
    match child.kind {
        ChildKind::Service if is_lb(live) => {
            let assigned = live["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if assigned {
                Readiness::Ready
            } else {
                waiting(Wait::Address)
            }
        }
        ChildKind::Certificate => {
            let conditions = live["status"]["conditions"].as_array();
            let find = |t: &str| conditions.and_then(|c| c.iter().find(|c| c["type"] == t));
            // While cert-manager reissues (Issuing=True) the Secret still holds the old
            // certificate, even where its readiness check already stamped the new
            // generation (it passes when the current CertificateRequest is not in its
            // cache yet).
            if let Some(c) = find("Issuing").filter(|c| c["status"] == "True") {
                let message = c["message"].as_str().unwrap_or("issuing");
                return waiting(Wait::Issuing(message.to_string()));
            }
            // cert-manager stamps Ready with the generation it judged: a Ready left over
            // from before a spec change (new dnsNames) is not ready for the new spec.
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
            match find("Ready") {
                Some(c)
                    if c["status"] == "True"
                        && c["observedGeneration"]
                            .as_i64()
                            .is_some_and(|o| o < generation) =>
                {
                    waiting(Wait::Reissuing)
                }
                Some(c) if c["status"] == "True" => Readiness::Ready,
                Some(c) => waiting(Wait::CertificateNotReady {
                    reason: c["reason"].as_str().unwrap_or("NotReady").to_string(),
                    message: c["message"].as_str().unwrap_or_default().to_string(),
                }),
                None => waiting(Wait::NotIssued),
            }
        }
        ChildKind::HttpRoute => route_readiness(child, live),
        ChildKind::DnsEndpoint => {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = live["status"]["observedGeneration"].as_i64();
            if observed.is_some_and(|o| o >= generation) {
                Readiness::Ready
            } else {
                waiting(Wait::DnsNotPublished)
            }
        }
        _ => Readiness::Ready,
    }
}

/// An HTTPRoute is ready when each parent (listener) it names reports it Accepted with its
/// references resolved, for the route's current generation. The status entry of a parent
/// matches its parentRef (Gateway name, namespace defaulting to the route's, sectionName).
fn route_readiness(child: &Child, live: &Value) -> Readiness {
    let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let route_ns = child.namespace().unwrap_or_default();
    let statuses = live["status"]["parents"].as_array();
    for want in child.object["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let ns_of = |r: &Value| r["namespace"].as_str().unwrap_or(route_ns).to_string();
        let parent = format!(
            "Gateway {}/{} listener {}",
            ns_of(want),
            want["name"].as_str().unwrap_or_default(),
            want["sectionName"].as_str().unwrap_or("*")
        );
        let st = statuses.and_then(|s| {
            s.iter().find(|p| {
                let r = &p["parentRef"];
                r["name"] == want["name"]
                    && ns_of(r) == ns_of(want)
                    && r["sectionName"] == want["sectionName"]
            })
        });
        let Some(st) = st else {
            return Readiness::Waiting(Wait::RouteNotReported { parent });
        };
        for t in ["Accepted", "ResolvedRefs"] {
            let c = st["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == t));
            match c {
                Some(c)
                    if c["observedGeneration"]
                        .as_i64()
                        .is_some_and(|o| o < generation) =>
                {
                    return Readiness::Waiting(Wait::RouteNotReported { parent });
                }
                Some(c) if c["status"] == "True" => {}
                Some(c) => {
                    return Readiness::Waiting(Wait::RouteNotAccepted {
                        parent,
                        condition: t.to_string(),
                        reason: c["reason"].as_str().unwrap_or_default().to_string(),
                        message: c["message"].as_str().unwrap_or_default().to_string(),
                    });
                }
                None => return Readiness::Waiting(Wait::RouteNotReported { parent }),
            }
        }
    }
    Readiness::Ready
}

/// One desired child that was not a conflict, with its readiness.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildReadiness<'a> {
    pub child: &'a Child,
    pub readiness: Readiness,
}

/// The readiness of every child the plan wrote or found unchanged (conflicts are reported
/// as such, not as children), from what `seen` says of each.
pub fn children<'a>(
    outcomes: &[(&'a Child, Outcome)],
    seen: impl Fn(&Child) -> Readiness,
) -> Vec<ChildReadiness<'a>> {
    outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Conflict(_)))
        .map(|(child, _)| ChildReadiness {
            child,
            readiness: seen(child),
        })
        .collect()
}

/// `status.resources`: one entry per child; the namespace only where it differs from the
/// owner's.
pub fn resources(owner: &Owner, children: &[ChildReadiness<'_>]) -> Vec<ResourceStatus> {
    children
        .iter()
        .map(|c| {
            let (ready, message) = match &c.readiness {
                Readiness::Ready => (true, None),
                Readiness::Waiting(w) => (false, Some(w.message())),
            };
            ResourceStatus {
                api_version: c.child.kind.api_version(),
                kind: c.child.kind.kind().to_string(),
                name: c.child.name().to_string(),
                namespace: (c.child.namespace() != owner.namespace.as_deref())
                    .then(|| c.child.namespace().map(str::to_string))
                    .flatten(),
                ready,
                message,
            }
        })
        .collect()
}

/// The detail condition over every child of `kind`: the first one waiting, else `ok`.
fn detail_of(
    children: &[ChildReadiness<'_>],
    kind: ChildKind,
    waiting: Reason,
    ok: &str,
) -> Option<Detail> {
    let mut of_kind = children.iter().filter(|c| c.child.kind == kind).peekable();
    of_kind.peek()?;
    let first_waiting = of_kind.find_map(|c| match &c.readiness {
        Readiness::Waiting(w) => Some((c.child, w)),
        Readiness::Ready => None,
    });
    Some(match first_waiting {
        Some((child, w)) => Detail {
            ok: false,
            reason: waiting,
            message: format!("{} {}: {}", kind.kind(), child.name(), w.message()),
        },
        None => Detail {
            ok: true,
            reason: Reason::Ready,
            message: ok.into(),
        },
    })
}

/// The ExposedApp's detail conditions, where they apply: CertificateReady (some route has
/// TLS), AddressAssigned (it has `tcp` entries, so LoadBalancer Services) and DNSPublished
/// (it has DNSEndpoints, or DNS is on and a tier's addresses are not known yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppDetails {
    pub certificate: Option<Detail>,
    pub address: Option<Detail>,
    pub dns: Option<Detail>,
}

/// Pure: the details from the children's readiness and the render's findings. A
/// WaitingForAddress finding is reported by DNSPublished only (once), so it is taken out
/// of `findings`.
pub fn app_details(
    has_tcp: bool,
    dns_enabled: bool,
    children: &[ChildReadiness<'_>],
    findings: &mut Vec<Finding>,
) -> AppDetails {
    let certificate = detail_of(
        children,
        ChildKind::Certificate,
        Reason::WaitingForCertificate,
        "certificate issued",
    );
    let address = has_tcp.then(|| {
        let unassigned = children.iter().find(|c| {
            c.child.kind == ChildKind::Service && c.readiness == Readiness::Waiting(Wait::Address)
        });
        match unassigned {
            Some(c) => Detail {
                ok: false,
                reason: Reason::WaitingForAddress,
                message: format!("Service {} has no address yet", c.child.name()),
            },
            None => Detail {
                ok: true,
                reason: Reason::Ready,
                message: "load-balancer addresses assigned".into(),
            },
        }
    });
    let unknown_address = findings
        .iter()
        .position(|f| f.reason == Reason::WaitingForAddress);
    let records = detail_of(
        children,
        ChildKind::DnsEndpoint,
        Reason::WaitingForDns,
        "records published",
    );
    let dns = match unknown_address {
        Some(i) if dns_enabled => Some(Detail {
            ok: false,
            reason: Reason::WaitingForAddress,
            message: findings[i].message.clone(),
        }),
        _ => records,
    };
    findings.retain(|f| f.reason != Reason::WaitingForAddress);
    AppDetails {
        certificate,
        address,
        dns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(kind: ChildKind, name: &str, spec: Value) -> Child {
        let owner = Owner {
            kind: "ExposedApp",
            name: "web".into(),
            namespace: Some("shop".into()),
            uid: None,
        };
        Child::with_spec(kind, owner.meta(name, Some("shop")), spec)
    }

    #[test]
    fn a_certificate_is_ready_only_for_the_generation_cert_manager_judged() {
        let cert = child(ChildKind::Certificate, "web", json!({}));
        let live = |generation: i64, conditions: Value| json!({"metadata": {"generation": generation}, "status": {"conditions": conditions}});
        let cases = [
            (
                live(
                    2,
                    json!([{"type": "Ready", "status": "True", "observedGeneration": 2}]),
                ),
                Readiness::Ready,
            ),
            (
                live(
                    3,
                    json!([{"type": "Ready", "status": "True", "observedGeneration": 2}]),
                ),
                Readiness::Waiting(Wait::Reissuing),
            ),
            (
                live(
                    3,
                    json!([{"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist", "observedGeneration": 3}]),
                ),
                Readiness::Waiting(Wait::CertificateNotReady {
                    reason: "DoesNotExist".into(),
                    message: "Issuing certificate as Secret does not exist".into(),
                }),
            ),
            // Ready already stamped with the new generation, but still reissuing.
            (
                live(
                    4,
                    json!([
                        {"type": "Ready", "status": "True", "observedGeneration": 4},
                        {"type": "Issuing", "status": "True", "message": "Issuing certificate as Secret does not match the certificate spec", "observedGeneration": 4},
                    ]),
                ),
                Readiness::Waiting(Wait::Issuing(
                    "Issuing certificate as Secret does not match the certificate spec".into(),
                )),
            ),
            (live(1, json!([])), Readiness::Waiting(Wait::NotIssued)),
        ];
        for (live, want) in cases {
            assert_eq!(of(&cert, Seen::Content(&live)), want, "{live}");
        }
        assert_eq!(
            of(&cert, Seen::Absent),
            Readiness::Waiting(Wait::JustWritten)
        );
    }

    #[test]
    fn services_need_an_address_only_when_they_are_load_balancers() {
        let lb = child(
            ChildKind::Service,
            "web-lb",
            json!({"type": "LoadBalancer"}),
        );
        let plain = child(ChildKind::Service, "web", json!({"type": "ClusterIP"}));
        let pending = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}});
        let assigned = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
        assert_eq!(of(&lb, Seen::Absent), Readiness::Waiting(Wait::Address));
        assert_eq!(
            of(&lb, Seen::Content(&pending)),
            Readiness::Waiting(Wait::Address)
        );
        assert_eq!(of(&lb, Seen::Content(&assigned)), Readiness::Ready);
        assert_eq!(of(&plain, Seen::Absent), Readiness::Ready);
        let ingress = child(ChildKind::Ingress, "web-external", json!({}));
        assert_eq!(of(&ingress, Seen::Exists), Readiness::Ready);
    }

    #[test]
    fn an_http_route_is_ready_once_every_parent_accepted_it_for_its_generation() {
        let route = child(
            ChildKind::HttpRoute,
            "web-external",
            json!({"parentRefs": [
                {"name": "public", "namespace": "gw", "sectionName": "shop.web.0"},
                {"name": "public", "namespace": "gw", "sectionName": "http"},
            ]}),
        );
        let cond = |t: &str, s: &str, g: i64| json!({"type": t, "status": s, "reason": if s == "True" { t } else { "NotAllowedByListeners" }, "message": "m", "observedGeneration": g});
        let parent = |section: &str, accepted: &str, g: i64| {
            json!({
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gw", "sectionName": section},
                "controllerName": "traefik.io/gateway-controller",
                "conditions": [cond("Accepted", accepted, g), cond("ResolvedRefs", "True", g)],
            })
        };
        let live = |parents: Vec<Value>| json!({"metadata": {"generation": 2}, "status": {"parents": parents}});
        assert_eq!(
            of(
                &route,
                Seen::Content(&live(vec![
                    parent("shop.web.0", "True", 2),
                    parent("http", "True", 2)
                ]))
            ),
            Readiness::Ready
        );
        assert_eq!(
            of(
                &route,
                Seen::Content(&live(vec![
                    parent("shop.web.0", "True", 2),
                    parent("http", "False", 2)
                ]))
            ),
            Readiness::Waiting(Wait::RouteNotAccepted {
                parent: "Gateway gw/public listener http".into(),
                condition: "Accepted".into(),
                reason: "NotAllowedByListeners".into(),
                message: "m".into(),
            })
        );
        assert_eq!(
            of(
                &route,
                Seen::Content(&live(vec![
                    parent("shop.web.0", "True", 1),
                    parent("http", "True", 2)
                ]))
            ),
            Readiness::Waiting(Wait::RouteNotReported {
                parent: "Gateway gw/public listener shop.web.0".into()
            }),
            "judged for an older generation"
        );
        assert_eq!(
            of(
                &route,
                Seen::Content(&live(vec![parent("shop.web.0", "True", 2)]))
            ),
            Readiness::Waiting(Wait::RouteNotReported {
                parent: "Gateway gw/public listener http".into()
            })
        );
        assert_eq!(
            of(&route, Seen::Absent),
            Readiness::Waiting(Wait::JustWritten)
        );
    }

    #[test]
    fn dns_endpoints_are_published_once_external_dns_read_their_generation() {
        let dns = child(ChildKind::DnsEndpoint, "web-external", json!({}));
        let behind = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}});
        let caught_up = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2}});
        let never = json!({"metadata": {"generation": 1}});
        assert_eq!(
            of(&dns, Seen::Content(&behind)),
            Readiness::Waiting(Wait::DnsNotPublished)
        );
        assert_eq!(of(&dns, Seen::Content(&caught_up)), Readiness::Ready);
        assert_eq!(
            of(&dns, Seen::Content(&never)),
            Readiness::Waiting(Wait::DnsNotPublished)
        );
    }

    /// Whole readiness in, whole details and resources out.
    #[test]
    fn app_details_and_resources_from_the_children() {
        let owner = Owner {
            kind: "ExposedApp",
            name: "web".into(),
            namespace: Some("shop".into()),
            uid: None,
        };
        let cert = child(ChildKind::Certificate, "web", json!({}));
        let lb = child(
            ChildKind::Service,
            "web-tcp",
            json!({"type": "LoadBalancer"}),
        );
        let dns = child(ChildKind::DnsEndpoint, "web-external", json!({}));
        let ready = |c| ChildReadiness {
            child: c,
            readiness: Readiness::Ready,
        };
        let waiting = |c, w| ChildReadiness {
            child: c,
            readiness: Readiness::Waiting(w),
        };
        let children = [
            waiting(&cert, Wait::NotIssued),
            waiting(&lb, Wait::Address),
            ready(&dns),
        ];
        let mut findings = vec![
            Finding::new(
                Reason::WaitingForAddress,
                "spec.routes[0]",
                "tier internal has no address yet",
            ),
            Finding::new(Reason::ReferenceNotFound, "spec.ingress[0]", "missing"),
        ];
        let details = app_details(true, true, &children, &mut findings);
        assert_eq!(
            details,
            AppDetails {
                certificate: Some(Detail {
                    ok: false,
                    reason: Reason::WaitingForCertificate,
                    message: "Certificate web: not issued yet".into(),
                }),
                address: Some(Detail {
                    ok: false,
                    reason: Reason::WaitingForAddress,
                    message: "Service web-tcp has no address yet".into(),
                }),
                dns: Some(Detail {
                    ok: false,
                    reason: Reason::WaitingForAddress,
                    message: "tier internal has no address yet".into(),
                }),
            }
        );
        assert_eq!(
            findings.iter().map(|f| f.reason).collect::<Vec<_>>(),
            [Reason::ReferenceNotFound],
            "the address wait is reported once, by DNSPublished"
        );
        let all_ready = [ready(&cert), ready(&lb), ready(&dns)];
        let details = app_details(true, true, &all_ready, &mut Vec::new());
        assert!(
            [details.certificate, details.address, details.dns]
                .iter()
                .all(|d| d
                    .as_ref()
                    .is_some_and(|d| d.ok && d.reason == Reason::Ready))
        );
        assert_eq!(
            app_details(false, true, &[ready(&dns)], &mut Vec::new()),
            AppDetails {
                certificate: None,
                address: None,
                dns: Some(Detail {
                    ok: true,
                    reason: Reason::Ready,
                    message: "records published".into(),
                }),
            },
            "no TLS, no tcp: only DNSPublished applies"
        );
        let statuses = resources(&owner, &children);
        assert_eq!(
            statuses
                .iter()
                .map(|r| (
                    r.kind.as_str(),
                    r.name.as_str(),
                    r.ready,
                    r.message.as_deref()
                ))
                .collect::<Vec<_>>(),
            [
                ("Certificate", "web", false, Some("not issued yet")),
                (
                    "Service",
                    "web-tcp",
                    false,
                    Some("waiting for a load-balancer address")
                ),
                ("DNSEndpoint", "web-external", true, None),
            ]
        );
        assert!(
            statuses.iter().all(|r| r.namespace.is_none()),
            "same namespace as the owner"
        );
    }
}
