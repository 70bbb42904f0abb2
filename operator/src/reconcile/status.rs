//! Pure status logic: from what a reconcile found to kstatus conditions. No I/O, no clock
//! (the time is passed in), so a status that did not change compares equal and is not written.

use gatehouse_api::{Condition, Reason, ResourceStatus, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::render::Finding;

/// One detail condition (CertificateReady, AddressAssigned, DNSPublished) when it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub ok: bool,
    pub reason: Reason,
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
    /// ClusterNetwork `PoolCapacity`: a warning only, never a reason for not Ready.
    pub capacity: Option<Detail>,
}

fn cond(
    type_: &str,
    ok: bool,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.as_str().to_string(),
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
    let stalled: Option<(Reason, String)> = a
        .blocking
        .first()
        .map(|f| (f.reason, format!("{}: {}", f.field, f.message)))
        .or_else(|| a.conflicts.first().map(|c| (Reason::Conflict, c.clone())))
        .or_else(|| {
            a.findings
                .iter()
                .find(|f| f.stalls)
                .map(|f| (f.reason, format!("{}: {}", f.field, f.message)))
        });

    // What still has to happen before the object is Ready, first cause first.
    let mut pending: Vec<(Reason, String)> = Vec::new();
    for d in [&a.certificate, &a.address, &a.dns].into_iter().flatten() {
        if !d.ok {
            pending.push((d.reason, d.message.clone()));
        }
    }
    for r in a.resources.iter().filter(|r| !r.ready) {
        pending.push((
            Reason::Progressing,
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
        pending.push((f.reason, format!("{}: {}", f.field, f.message)));
    }

    let mut out = Vec::new();
    match (&stalled, pending.first()) {
        (Some((r, m)), _) => {
            out.push(cond(
                condition::READY,
                false,
                *r,
                m.clone(),
                generation,
                now,
            ));
            out.push(cond(
                condition::RECONCILING,
                false,
                *r,
                "cannot progress without a change".into(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                true,
                *r,
                m.clone(),
                generation,
                now,
            ));
        }
        (None, Some((r, m))) => {
            out.push(cond(
                condition::READY,
                false,
                *r,
                m.clone(),
                generation,
                now,
            ));
            out.push(cond(
                condition::RECONCILING,
                true,
                *r,
                m.clone(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                false,
                Reason::Progressing,
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
                Reason::Ready,
                msg,
                generation,
                now,
            ));
            out.push(cond(
                condition::RECONCILING,
                false,
                Reason::Ready,
                "up to date".into(),
                generation,
                now,
            ));
            out.push(cond(
                condition::STALLED,
                false,
                Reason::Ready,
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
        (condition::POOL_CAPACITY, &a.capacity),
    ] {
        if let Some(d) = d {
            out.push(cond(
                type_,
                d.ok,
                d.reason,
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
                Reason::HostConflict,
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
                reason: Reason::WaitingForCertificate,
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
                Finding::new(Reason::ReferenceNotFound, "spec.rules[1].to[0]", "missing"),
                Finding::stalling(
                    Reason::FqdnUnsupported,
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
    fn a_nearly_full_pool_warns_and_the_network_stays_ready() {
        let a = Assessment {
            resources: vec![ready_resource()],
            capacity: Some(Detail {
                ok: false,
                reason: Reason::PoolNearlyFull,
                message: "pool \"p\": 2 of 2 addresses allocated".into(),
            }),
            ..Default::default()
        };
        let c = conditions(&a, Some(1), &[], &t("2026-01-01T00:00:00Z"));
        assert_eq!(by_type(&c, "Ready").status, "True");
        assert_eq!(by_type(&c, "Stalled").status, "False");
        assert_eq!(by_type(&c, "Reconciling").status, "False");
        let p = by_type(&c, "PoolCapacity");
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("False", "PoolNearlyFull")
        );
        assert!(p.message.contains("pool \"p\""), "{}", p.message);
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
}
