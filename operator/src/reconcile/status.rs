//! Pure status logic: from what a reconcile found to kstatus conditions. No I/O, no clock
//! (the time is passed in), so a status that did not change compares equal and is not written.

use gatehouse_api::{Condition, ResourceStatus, condition, reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::render::Finding;

/// One detail condition (CertificateReady, AddressAssigned, DNSPublished) when it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// Everything a reconcile learned that status reports.
#[derive(Clone, Debug, Default)]
pub struct Assessment {
    /// Findings that stopped rendering (invalid spec, missing network, host conflict...).
    pub blocking: Vec<Finding>,
    /// Findings of a successful render: stalling ones (FQDNUnsupported) and pending ones
    /// (ReferenceNotFound, WaitingForAddress).
    pub findings: Vec<Finding>,
    /// Children that exist but are not ours: never written, reported as Conflict.
    pub conflicts: Vec<String>,
    /// Readiness of each desired child.
    pub resources: Vec<ResourceStatus>,
    pub certificate: Option<Detail>,
    pub address: Option<Detail>,
    pub dns: Option<Detail>,
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The kstatus conditions for an assessment. `previous` supplies lastTransitionTime for
/// conditions whose status did not change, so an unchanged state yields identical output.
pub fn conditions(
    a: &Assessment,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let stalled: Option<(String, String)> = a
        .blocking
        .first()
        .map(|f| (f.reason.to_string(), format!("{}: {}", f.field, f.message)))
        .or_else(|| {
            a.conflicts
                .first()
                .map(|c| (reason::CONFLICT.to_string(), c.clone()))
        })
        .or_else(|| {
            a.findings
                .iter()
                .find(|f| f.stalls)
                .map(|f| (f.reason.to_string(), format!("{}: {}", f.field, f.message)))
        });

    // What still has to happen before the object is Ready, first cause first.
    let mut pending: Vec<(String, String)> = Vec::new();
    for d in [&a.certificate, &a.address, &a.dns].into_iter().flatten() {
        if !d.ok {
            pending.push((d.reason.clone(), d.message.clone()));
        }
    }
    for r in a.resources.iter().filter(|r| !r.ready) {
        pending.push((
            reason::PROGRESSING.to_string(),
            format!(
                "{} {} is not ready{}",
                r.kind,
                r.name,
                r.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        ));
    }
    for f in a.findings.iter().filter(|f| !f.stalls) {
        pending.push((f.reason.to_string(), format!("{}: {}", f.field, f.message)));
    }

    let mut out = Vec::new();
    match (&stalled, pending.first()) {
        (Some((r, m)), _) => {
            out.push(cond(condition::READY, false, r, m.clone(), generation, now));
            out.push(cond(
                condition::RECONCILING,
                false,
                r,
                "cannot progress without a change".into(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                true,
                r,
                m.clone(),
                generation,
                now,
            ));
        }
        (None, Some((r, m))) => {
            out.push(cond(condition::READY, false, r, m.clone(), generation, now));
            out.push(cond(
                condition::RECONCILING,
                true,
                r,
                m.clone(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                false,
                reason::PROGRESSING,
                "progressing".into(),
                generation,
                now,
            ));
        }
        (None, None) => {
            let msg = format!("all {} children ready", a.resources.len());
            out.push(cond(
                condition::READY,
                true,
                reason::READY,
                msg,
                generation,
                now,
            ));
            out.push(cond(
                condition::RECONCILING,
                false,
                reason::READY,
                "up to date".into(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                false,
                reason::READY,
                "up to date".into(),
                generation,
                now,
            ));
        }
    }
    for (type_, d) in [
        (condition::CERTIFICATE_READY, &a.certificate),
        (condition::ADDRESS_ASSIGNED, &a.address),
        (condition::DNS_PUBLISHED, &a.dns),
    ] {
        if let Some(d) = d {
            out.push(cond(
                type_,
                d.ok,
                &d.reason,
                d.message.clone(),
                generation,
                now,
            ));
        }
    }
    for c in &mut out {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    out
}

/// Readiness of one child from its cached content (None: content not cached, only that it
/// exists). Services of type LoadBalancer need an address, Certificates their Ready
/// condition for the current generation, DNSEndpoints an observedGeneration that caught up
/// (external-dns writes it when its source has read the current generation, just before
/// it sends the records to the provider); everything else is ready once it exists.
pub fn child_ready(
    kind: crate::render::ChildKind,
    live: Option<&serde_json::Value>,
) -> (bool, Option<String>) {
    use crate::render::ChildKind;
    let Some(live) = live else {
        return (true, None);
    };
    match kind {
        ChildKind::Service if live["spec"]["type"] == "LoadBalancer" => {
            let assigned = live["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if assigned {
                (true, None)
            } else {
                (false, Some("waiting for a load-balancer address".into()))
            }
        }
        ChildKind::Certificate => {
            let ready = live["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned();
            // cert-manager stamps the condition with the generation it judged: a Ready
            // left over from before a spec change (new dnsNames) is not ready for the new
            // spec until the certificate is reissued.
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
            // While cert-manager reissues (Issuing=True) the Secret still holds the old
            // certificate, even where its readiness check already stamped the new generation
            // (it passes when the current CertificateRequest is not in its cache yet).
            let issuing = live["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Issuing"))
                .filter(|c| c["status"] == "True");
            if let Some(c) = issuing {
                let message = c["message"].as_str().unwrap_or("issuing");
                return (false, Some(format!("Issuing: {message}")));
            }
            match ready {
                Some(c)
                    if c["status"] == "True"
                        && c["observedGeneration"]
                            .as_i64()
                            .is_some_and(|o| o < generation) =>
                {
                    (false, Some("reissuing for the changed spec".into()))
                }
                Some(c) if c["status"] == "True" => (true, None),
                Some(c) => {
                    let reason = c["reason"].as_str().unwrap_or("NotReady");
                    let message = c["message"].as_str().unwrap_or_default();
                    (false, Some(format!("{reason}: {message}")))
                }
                None => (false, Some("not issued yet".into())),
            }
        }
        ChildKind::DnsEndpoint => {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
            let observed = live["status"]["observedGeneration"].as_i64();
            if observed.is_some_and(|o| o >= generation) {
                (true, None)
            } else {
                (false, Some("not published by external-dns yet".into()))
            }
        }
        _ => (true, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn ready_resource() -> ResourceStatus {
        ResourceStatus {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: "web".into(),
            namespace: None,
            ready: true,
            message: None,
        }
    }

    fn by_type<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_ready_is_ready_and_not_reconciling() {
        let a = Assessment {
            resources: vec![ready_resource()],
            ..Default::default()
        };
        let c = conditions(&a, Some(3), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(by_type(&c, "Ready").status, "True");
        assert_eq!(by_type(&c, "Ready").observed_generation, Some(3));
        assert_eq!(by_type(&c, "Reconciling").status, "False");
        assert_eq!(by_type(&c, "Stalled").status, "False");
        assert_eq!(c.len(), 3, "no detail conditions when none apply");
    }

    #[test]
    fn blocking_finding_stalls_with_field_named() {
        let a = Assessment {
            blocking: vec![Finding::stalling(
                "HostConflict",
                "spec.routes[0].hosts[0]",
                "held by a/b",
            )],
            ..Default::default()
        };
        let c = conditions(&a, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        let s = by_type(&c, "Stalled");
        assert_eq!(
            (s.status.as_str(), s.reason.as_str()),
            ("True", "HostConflict")
        );
        assert_eq!(s.message, "spec.routes[0].hosts[0]: held by a/b");
        assert_eq!(by_type(&c, "Ready").status, "False");
        assert_eq!(by_type(&c, "Reconciling").status, "False");
    }

    #[test]
    fn conflict_stalls() {
        let a = Assessment {
            conflicts: vec!["Service web exists and is not managed by Gatehouse".into()],
            ..Default::default()
        };
        let c = conditions(&a, None, &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(by_type(&c, "Stalled").reason, "Conflict");
        assert!(by_type(&c, "Ready").message.contains("Service web"));
    }

    #[test]
    fn pending_detail_is_reconciling() {
        let a = Assessment {
            resources: vec![ready_resource()],
            certificate: Some(Detail {
                ok: false,
                reason: "WaitingForCertificate".into(),
                message: "issuing".into(),
            }),
            ..Default::default()
        };
        let c = conditions(&a, Some(2), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(by_type(&c, "Reconciling").status, "True");
        assert_eq!(by_type(&c, "Ready").reason, "WaitingForCertificate");
        assert_eq!(by_type(&c, "CertificateReady").status, "False");
    }

    #[test]
    fn stalling_finding_beats_pending() {
        let a = Assessment {
            findings: vec![
                Finding::new("ReferenceNotFound", "spec.rules[1].to[0]", "missing"),
                Finding::stalling(
                    "FQDNUnsupported",
                    "spec.rules[0].to[0].fqdn",
                    "needs Cilium",
                ),
            ],
            ..Default::default()
        };
        let c = conditions(&a, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(by_type(&c, "Stalled").reason, "FQDNUnsupported");
    }

    #[test]
    fn unchanged_status_keeps_transition_times() {
        let a = Assessment {
            resources: vec![ready_resource()],
            ..Default::default()
        };
        let first = conditions(&a, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        let second = conditions(&a, Some(1), &first, &t("2026-06-01T00:00:00Z"));
        assert_eq!(
            first, second,
            "same state, same conditions: no status write"
        );
        let b = Assessment {
            conflicts: vec!["x".into()],
            ..Default::default()
        };
        let third = conditions(&b, Some(1), &second, &t("2026-07-01T00:00:00Z"));
        assert_eq!(
            by_type(&third, "Ready").last_transition_time,
            t("2026-07-01T00:00:00Z"),
            "Ready went True -> False"
        );
        assert_eq!(
            by_type(&third, "Reconciling").last_transition_time,
            t("2026-01-01T00:00:00Z"),
            "Reconciling stayed False"
        );
    }

    #[test]
    fn a_certificate_is_ready_only_for_the_generation_cert_manager_judged() {
        let cert = |generation: i64, cond: serde_json::Value| serde_json::json!({"metadata": {"generation": generation}, "status": {"conditions": [cond]}});
        let kind = crate::render::ChildKind::Certificate;
        let current = cert(
            2,
            serde_json::json!({"type": "Ready", "status": "True", "observedGeneration": 2}),
        );
        assert_eq!(child_ready(kind, Some(&current)), (true, None));
        let stale = cert(
            3,
            serde_json::json!({"type": "Ready", "status": "True", "observedGeneration": 2}),
        );
        assert_eq!(
            child_ready(kind, Some(&stale)),
            (false, Some("reissuing for the changed spec".into()))
        );
        let issuing = cert(
            3,
            serde_json::json!({"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist", "observedGeneration": 3}),
        );
        assert_eq!(
            child_ready(kind, Some(&issuing)),
            (
                false,
                Some("DoesNotExist: Issuing certificate as Secret does not exist".into())
            )
        );
        // Ready already stamped with the new generation, but still reissuing.
        let reissuing = serde_json::json!({"metadata": {"generation": 4}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "observedGeneration": 4},
            {"type": "Issuing", "status": "True", "reason": "DoesNotMatch", "message": "Issuing certificate as Secret does not match the certificate spec", "observedGeneration": 4},
        ]}});
        assert_eq!(
            child_ready(kind, Some(&reissuing)),
            (
                false,
                Some(
                    "Issuing: Issuing certificate as Secret does not match the certificate spec"
                        .into()
                )
            )
        );
    }
}
