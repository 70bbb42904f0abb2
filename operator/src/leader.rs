//! Leader election on a coordination.k8s.io/v1 Lease, so that of several replicas only one
//! runs the controllers (and writes).
//!
//! A small loop of our own rather than a crate: the protocol is ~100 lines (client-go's
//! leaderelection), the maintained Rust crates lag kube releases, and owning it lets the
//! expiry rule be client-go's skew-safe one: a lease is expired when its record has not
//! changed for `lease_duration` by *our* clock, not by comparing the holder's timestamps.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica (pod name), written as holderIdentity.
    pub identity: String,
    /// How long a lease stays valid without renewal; a standby takes over after this.
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby retries).
    pub renew_period: Duration,
}

impl LeaderConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            name: "gatehouse-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
        }
    }
}

/// What a standby last saw of the lease and when (by our clock).
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaderConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquired.or_else(|| Some(Self::now())),
            renew_time: Some(Self::now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew. Ok(true) when we hold the lease afterwards.
    /// Writes only when we are, or are becoming, the holder: a standby facing a live
    /// leader only reads.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone();
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if !ours {
            let record = (holder.clone(), spec.renew_time.clone());
            let changed = self.observed.as_ref().is_none_or(|o| o.record != record);
            if changed {
                self.observed = Some(Observed {
                    record,
                    at: Instant::now(),
                });
            }
            let held = holder.is_some_and(|h| !h.is_empty());
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|o| o.at.elapsed() >= self.config.lease_duration);
            if held && !expired {
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = lease.clone();
        next.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion in `next` makes this a compare-and-swap: if another replica
        // wrote in between, we get 409 and stay a standby.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: lease not readable"),
            }
            tokio::time::sleep(self.config.renew_period).await;
        }
    }

    /// Renews until renewal has failed for a whole lease duration (another replica may then
    /// lead), and returns: the caller must stop writing.
    ///
    /// Each attempt is bounded by the time left before giving up: a partitioned leader whose
    /// requests hang (rather than fail) must still give up before the others may take the
    /// lease, and the client's own timeout (minutes) is far longer than a lease.
    pub async fn keep(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_period).await;
            let left = self
                .config
                .lease_duration
                .saturating_sub(self.config.renew_period)
                .saturating_sub(last_renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("leader election: another replica holds the lease");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewal failed"),
                Err(_) => tracing::warn!(?left, "leader election: renewal got no answer"),
            }
            // Give up a little before the lease could expire for the others.
            if last_renewed.elapsed() + self.config.renew_period >= self.config.lease_duration {
                tracing::error!("leader election: could not renew in time");
                return;
            }
        }
    }
}
