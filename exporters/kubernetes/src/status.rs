//! Writing allocated addresses into `status.loadBalancer.ingress` through a PATCH of the
//! Service's `/status` subresource.
//!
//! The PATCH carries the `resourceVersion` the plan was made from, so a Service changed in the
//! meantime answers 409 Conflict instead of being overwritten; the Service is then read again
//! and the PATCH retried with the fresh version, unless it meanwhile got an address.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::Error;
use crate::alloc::ingress;
use crate::manifest::{Family, ServiceKey};

/// How many times a conflicting PATCH is retried with a fresh `resourceVersion`.
const CONFLICT_RETRIES: usize = 3;

/// The field manager named in every write.
pub const FIELD_MANAGER: &str = "balanced-exporter";

/// The merge patch setting the ingress addresses; `resource_version` makes it conditional.
pub fn ingress_patch(
    ips: &[IpAddr],
    ip_mode: Option<&str>,
    resource_version: Option<&str>,
) -> serde_json::Value {
    let ingress: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| match ip_mode {
            Some(mode) => json!({"ip": ip.to_string(), "ipMode": mode}),
            None => json!({"ip": ip.to_string()}),
        })
        .collect();
    let mut patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}

/// What became of a status write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The Service now carries the addresses.
    Done,
    /// The Service got an address for these families from someone else meanwhile.
    Superseded,
    /// The Service is gone.
    Gone,
}

/// Sets the Service's ingress to `ips` (its current addresses followed by the new ones).
pub async fn write_ingress(
    api: &Api<Service>,
    key: &ServiceKey,
    service: &Service,
    new: &[IpAddr],
    ip_mode: Option<&str>,
) -> Result<Written, Error> {
    let mut current = service.clone();
    for _ in 0..=CONFLICT_RETRIES {
        let mut ips = ingress(&current);
        let families: Vec<Family> = ips.iter().map(Family::of).collect();
        if new.iter().any(|ip| families.contains(&Family::of(ip))) {
            return Ok(Written::Superseded);
        }
        ips.extend(new);
        let patch = ingress_patch(&ips, ip_mode, current.metadata.resource_version.as_deref());
        match api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(Written::Done),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                current = match api.get(&key.name).await {
                    Ok(fresh) => fresh,
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        return Ok(Written::Gone);
                    }
                    Err(e) => {
                        return Err(Error::kube(
                            format!("reading Service {key} after a conflict"),
                            e,
                        ));
                    }
                };
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Written::Gone),
            Err(e) => {
                return Err(Error::kube(
                    format!("patching the status of Service {key}"),
                    e,
                ));
            }
        }
    }
    Err(Error::Conflict {
        service: key.to_string(),
        retries: CONFLICT_RETRIES,
    })
}
