//! Leader election with a `coordination.k8s.io/v1` Lease, so only one exporter allocates.
//!
//! One attempt per call ([`LeaseLock::try_acquire_or_renew`]), the caller loops: the holder
//! renews well within `leaseDurationSeconds`; another candidate takes the Lease only when its
//! `renewTime` is older than the duration. Every write is a create or a replace carrying the
//! `resourceVersion` read, so two candidates racing get one 409 Conflict and one Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::Error;
use crate::status::FIELD_MANAGER;

/// Who holds the Lease after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    Leading,
    Following { holder: Option<String> },
}

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// How often the holder should renew: a third of the duration.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// One attempt to take or keep the Lease at time `now`.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<Leadership, Error> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let existing = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => return Err(Error::kube(format!("reading Lease {}", self.name), e)),
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&params, &lease).await {
                Ok(_) => Ok(Leadership::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Ok(Leadership::Following { holder: None })
                }
                Err(e) => Err(Error::kube(format!("creating Lease {}", self.name), e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder.as_deref() == Some(self.identity.as_str()) {
            let acquired = spec.acquire_time.map(|t| t.0).unwrap_or(now);
            self.spec(acquired, now, transitions)
        } else {
            let duration = spec
                .lease_duration_seconds
                .map(|s| SignedDuration::from_secs(i64::from(s)))
                .unwrap_or_else(|| SignedDuration::from_secs(self.seconds().into()));
            let expired = match spec.renew_time.or(spec.acquire_time) {
                Some(renewed) => renewed.0 + duration < now,
                None => true,
            };
            if holder.is_some() && !expired {
                return Ok(Leadership::Following { holder });
            }
            self.spec(now, now, transitions + 1)
        };
        lease.spec = Some(new_spec);
        match self.api.replace(&self.name, &params, &lease).await {
            Ok(_) => Ok(Leadership::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Leadership::Following { holder }),
            Err(e) => Err(Error::kube(format!("renewing Lease {}", self.name), e)),
        }
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.seconds()),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
