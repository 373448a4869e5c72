//! Pods that opted out of the backend role: a pod annotated `balanced.io/tunnel-ignore: "true"`
//! (or the original's `balanced.demonware.net/tunnel-ignore`) stays a backend the directors send
//! to, but its manifests name no `pod` for it, so the backend role leaves its network namespace
//! alone — whoever runs the pod configures the tunnel and the VIPs in it himself.
//!
//! Pure. Only the pods' metadata is needed, and only that is watched: a hostNetwork pod needs
//! nothing here (its metadata could not say so anyway) because the backend role already skips a
//! pod whose network namespace is the host's. "true" opts out whatever its case; any other value
//! does not, and is reported so a typo is not silently ignored.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation that opts a pod out of the backend role.
pub const TUNNEL_IGNORE: &str = "balanced.io/tunnel-ignore";
/// The original BalanceD's name for it, accepted for migration.
pub const LEGACY_TUNNEL_IGNORE: &str = "balanced.demonware.net/tunnel-ignore";

/// What one pod's annotations say about the backend role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptOut {
    /// Either annotation is "true" (any case).
    pub ignored: bool,
    /// Annotations present with a value other than "true": `(annotation, value)`, sorted.
    pub invalid: Vec<(&'static str, String)>,
}

impl OptOut {
    /// The Warning text for the invalid values, if any: names the pod and every bad value.
    pub fn warning(&self, namespace: &str, name: &str) -> Option<String> {
        if self.invalid.is_empty() {
            return None;
        }
        let listed: Vec<String> = self
            .invalid
            .iter()
            .map(|(annotation, value)| format!("{annotation} {value:?}"))
            .collect();
        Some(format!(
            "pod {namespace}/{name}: annotation {} is not \"true\", so the pod is not opted out \
             of the backend role",
            listed.join(", ")
        ))
    }
}

/// Reads the opt-out annotations of one pod.
pub fn opt_out(annotations: Option<&BTreeMap<String, String>>) -> OptOut {
    let mut out = OptOut::default();
    for name in [TUNNEL_IGNORE, LEGACY_TUNNEL_IGNORE] {
        let Some(value) = annotations.and_then(|a| a.get(name)) else {
            continue;
        };
        if value.eq_ignore_ascii_case("true") {
            out.ignored = true;
        } else {
            out.invalid.push((name, value.clone()));
        }
    }
    out.invalid.sort();
    out
}

/// The opted-out pods, by UID (what EndpointSlices' `targetRef`s carry), with their namespace
/// so a relist of one namespace replaces only its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptedOut {
    namespace_by_uid: BTreeMap<String, String>,
}

impl OptedOut {
    /// The opted-out pods among `pods`, each with its warning for invalid values (if any).
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a ObjectMeta>) -> (Self, Vec<String>) {
        let mut set = OptedOut::default();
        let mut warnings = Vec::new();
        for meta in pods {
            let (Some(namespace), Some(name), Some(uid)) = (&meta.namespace, &meta.name, &meta.uid)
            else {
                continue;
            };
            let opt = opt_out(meta.annotations.as_ref());
            warnings.extend(opt.warning(namespace, name));
            if opt.ignored {
                set.insert(uid, namespace);
            }
        }
        warnings.sort();
        (set, warnings)
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.namespace_by_uid.contains_key(uid)
    }

    /// Adds a pod; false if it was already there.
    pub fn insert(&mut self, uid: &str, namespace: &str) -> bool {
        self.namespace_by_uid
            .insert(uid.to_owned(), namespace.to_owned())
            .is_none()
    }

    /// Removes a pod; false if it was not there.
    pub fn remove(&mut self, uid: &str) -> bool {
        self.namespace_by_uid.remove(uid).is_some()
    }

    pub fn len(&self) -> usize {
        self.namespace_by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespace_by_uid.is_empty()
    }

    /// The UIDs, sorted.
    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.namespace_by_uid.keys().map(String::as_str)
    }

    /// Replaces the pods of the namespaces `in_scope` accepts by `listed`; returns the UIDs whose
    /// membership changed.
    pub fn replace_scope(
        &mut self,
        in_scope: impl Fn(&str) -> bool,
        listed: OptedOut,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        self.namespace_by_uid.retain(|uid, namespace| {
            let keep = !in_scope(namespace) || listed.contains(uid);
            if !keep {
                changed.push(uid.clone());
            }
            keep
        });
        for (uid, namespace) in listed.namespace_by_uid {
            if self.insert(&uid, &namespace) {
                changed.push(uid);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn true_in_any_case_under_either_name_opts_out() {
        for name in [TUNNEL_IGNORE, LEGACY_TUNNEL_IGNORE] {
            for value in ["true", "True", "TRUE"] {
                let opt = opt_out(Some(&annotations(&[(name, value)])));
                assert!(opt.ignored, "{name}: {value}");
                assert!(opt.invalid.is_empty());
            }
        }
        assert_eq!(opt_out(None), OptOut::default());
        assert_eq!(
            opt_out(Some(&annotations(&[("other", "true")]))),
            OptOut::default()
        );
    }

    #[test]
    fn another_value_does_not_opt_out_and_is_reported() {
        let opt = opt_out(Some(&annotations(&[
            (TUNNEL_IGNORE, "yes"),
            (LEGACY_TUNNEL_IGNORE, "false"),
        ])));
        assert!(!opt.ignored);
        assert_eq!(
            opt.warning("shop", "web-1").unwrap(),
            "pod shop/web-1: annotation balanced.demonware.net/tunnel-ignore \"false\", \
             balanced.io/tunnel-ignore \"yes\" is not \"true\", so the pod is not opted out \
             of the backend role"
        );
        // One valid name is enough; the other's bad value is still reported.
        let opt = opt_out(Some(&annotations(&[
            (TUNNEL_IGNORE, "1"),
            (LEGACY_TUNNEL_IGNORE, "true"),
        ])));
        assert!(opt.ignored);
        assert_eq!(opt.invalid, vec![(TUNNEL_IGNORE, "1".to_owned())]);
    }

    #[test]
    fn a_relist_replaces_only_its_namespaces_and_names_what_changed() {
        let mut set = OptedOut::default();
        set.insert("a", "shop");
        set.insert("b", "shop");
        set.insert("c", "kube-system");
        let mut listed = OptedOut::default();
        listed.insert("b", "shop");
        listed.insert("d", "shop");
        let mut changed = set.replace_scope(|ns| ns == "shop", listed);
        changed.sort();
        assert_eq!(changed, vec!["a", "d"]);
        assert_eq!(set.uids().collect::<Vec<_>>(), vec!["b", "c", "d"]);
    }
}
