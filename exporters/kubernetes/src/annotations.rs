//! The per-Service configuration read from `balanced.io/*` annotations (and, for migration, the
//! original's `balanced.demonware.net/{ipvs-scheduler,ip-pool,ip-request}`).
//!
//! Pure. An invalid value is an error naming the annotation, never replaced by a default: the
//! caller keeps the Service's last good configuration and raises a Warning Event.

use std::collections::BTreeMap;
use std::fmt;

use balanced_schemas::v1::{
    Balancer, Duration, Encapsulation, Forwarding, ForwardingMethod, Scheduler, SchedulerFlag,
};

use crate::config::RenderConfig;

pub const PREFIX: &str = "balanced.io/";
pub const LEGACY_PREFIX: &str = "balanced.demonware.net/";

/// `balanced.io/` names and the original's name for the same setting, when it had one.
const NAMES: [(&str, Option<&str>); 8] = [
    ("scheduler", Some("ipvs-scheduler")),
    ("scheduler-flags", None),
    ("forwarding", None),
    ("tunnel-encapsulation", None),
    ("tunnel-port", None),
    ("persistence-timeout", None),
    ("ip-pool", Some("ip-pool")),
    ("ip-request", Some("ip-request")),
];

const FLAGS: [SchedulerFlag; 7] = [
    SchedulerFlag::MhFallback,
    SchedulerFlag::MhPort,
    SchedulerFlag::ShFallback,
    SchedulerFlag::ShPort,
    SchedulerFlag::Flag1,
    SchedulerFlag::Flag2,
    SchedulerFlag::Flag3,
];

/// The configuration of one Service's virtual services, as its annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub scheduler: Scheduler,
    pub scheduler_flags: Vec<SchedulerFlag>,
    pub forwarding: Forwarding,
    /// `balanced.io/persistence-timeout` in seconds; overrides `sessionAffinity: ClientIP`.
    pub persistence_timeout: Option<u32>,
}

impl ServiceConfig {
    /// The configuration a manifest written earlier was rendered with: after a restart, the last
    /// good configuration of a Service whose annotations are now invalid.
    pub fn from_manifest(balancer: &Balancer) -> Option<ServiceConfig> {
        let first = balancer.spec.services.first()?;
        Some(ServiceConfig {
            scheduler: first.scheduler,
            scheduler_flags: first.scheduler_flags.clone(),
            forwarding: first.forwarding.clone(),
            persistence_timeout: first.persistence.as_ref().map(|p| p.timeout),
        })
    }
}

/// One annotation whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: String,
    pub value: String,
    pub message: String,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotation {} {:?}: {}",
            self.annotation, self.value, self.message
        )
    }
}

/// The value of setting `name` (e.g. `"scheduler"`), from `balanced.io/<name>` or else from the
/// original's annotation; returns the full annotation key with it.
pub fn lookup<'a>(
    annotations: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<(&'a str, &'a str)> {
    let (_, legacy) = NAMES.iter().find(|(n, _)| *n == name)?;
    let current = annotations.get_key_value(&format!("{PREFIX}{name}"));
    let old = legacy.and_then(|l| annotations.get_key_value(&format!("{LEGACY_PREFIX}{l}")));
    current.or(old).map(|(k, v)| (k.as_str(), v.as_str()))
}

/// `balanced.io/*` annotations this version does not know: likely typos, worth a warning.
pub fn unknown(annotations: &BTreeMap<String, String>) -> Vec<&str> {
    annotations
        .keys()
        .filter_map(|k| k.strip_prefix(PREFIX).map(|rest| (k, rest)))
        .filter(|(_, rest)| !NAMES.iter().any(|(n, _)| n == rest))
        .map(|(k, _)| k.as_str())
        .collect()
}

/// Reads the Service's configuration; every invalid annotation is reported, none is defaulted.
pub fn service_config(
    annotations: &BTreeMap<String, String>,
    defaults: &RenderConfig,
) -> Result<ServiceConfig, Vec<AnnotationError>> {
    let mut errors = Vec::new();
    let setting = |name: &str| lookup(annotations, name);
    let mut fail = |key: &str, value: &str, message: String| {
        errors.push(AnnotationError {
            annotation: key.to_owned(),
            value: value.to_owned(),
            message,
        })
    };

    let scheduler = match setting("scheduler") {
        None => defaults.scheduler,
        Some((key, value)) => match value.trim().parse::<Scheduler>() {
            Ok(s) => s,
            Err(message) => {
                fail(key, value, message);
                defaults.scheduler
            }
        },
    };

    let scheduler_flags = match setting("scheduler-flags") {
        None if scheduler == Scheduler::Mh => vec![SchedulerFlag::MhFallback],
        None => Vec::new(),
        Some((key, value)) => {
            let mut flags = Vec::new();
            for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                match FLAGS.into_iter().find(|f| f.as_str() == word) {
                    None => {
                        let names: Vec<_> = FLAGS.iter().map(|f| f.as_str()).collect();
                        fail(
                            key,
                            value,
                            format!("unknown flag {word:?}: expected {}", names.join(", ")),
                        );
                    }
                    Some(flag) => {
                        if let Some(needs) = flag_scheduler(flag).filter(|s| *s != scheduler) {
                            fail(
                                key,
                                value,
                                format!("{flag} needs scheduler {needs}, not {scheduler}"),
                            );
                        }
                        flags.push(flag);
                    }
                }
            }
            flags.sort();
            flags.dedup();
            flags
        }
    };

    let method = match setting("forwarding") {
        None => defaults.forwarding,
        Some((key, value)) => match value.trim() {
            "tunnel" => ForwardingMethod::Tunnel,
            "direct" => ForwardingMethod::Direct,
            "masquerade" => ForwardingMethod::Masquerade,
            _ => {
                fail(
                    key,
                    value,
                    "expected tunnel, direct or masquerade".to_owned(),
                );
                defaults.forwarding
            }
        },
    };
    let mut forwarding = Forwarding {
        method,
        ..Forwarding::default()
    };
    if let Some((key, value)) = setting("tunnel-encapsulation") {
        let encapsulation = match value.trim() {
            "ipip" => Some(Encapsulation::Ipip),
            "gue" => Some(Encapsulation::Gue),
            "gre" => Some(Encapsulation::Gre),
            _ => {
                fail(key, value, "expected ipip, gue or gre".to_owned());
                None
            }
        };
        if method != ForwardingMethod::Tunnel {
            fail(
                key,
                value,
                format!("only tunnel forwarding encapsulates, not {method}"),
            );
        }
        forwarding.encapsulation = encapsulation;
    }
    match (setting("tunnel-port"), forwarding.encapsulation) {
        (Some((key, value)), Some(Encapsulation::Gue)) => match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => forwarding.port = Some(port),
            _ => fail(key, value, "expected a UDP port 1-65535".to_owned()),
        },
        (Some((key, value)), _) => fail(
            key,
            value,
            "only the gue encapsulation takes a port".to_owned(),
        ),
        (None, Some(Encapsulation::Gue)) => fail(
            "balanced.io/tunnel-encapsulation",
            "gue",
            "gue needs the backend's UDP port in balanced.io/tunnel-port".to_owned(),
        ),
        (None, _) => {}
    }

    let persistence_timeout =
        setting("persistence-timeout").and_then(|(key, value)| match value.parse::<Duration>() {
            Ok(d) if d.as_std().subsec_nanos() == 0 && d.as_std().as_secs() > 0 => {
                match u32::try_from(d.as_std().as_secs()) {
                    Ok(secs) => Some(secs),
                    Err(_) => {
                        fail(key, value, "longer than 2^32 seconds".to_owned());
                        None
                    }
                }
            }
            Ok(_) => {
                fail(
                    key,
                    value,
                    "expected a whole number of seconds, at least 1s".to_owned(),
                );
                None
            }
            Err(message) => {
                fail(key, value, message);
                None
            }
        });

    if errors.is_empty() {
        Ok(ServiceConfig {
            scheduler,
            scheduler_flags,
            forwarding,
            persistence_timeout,
        })
    } else {
        Err(errors)
    }
}

/// The scheduler a flag belongs to, for the flags that belong to one.
fn flag_scheduler(flag: SchedulerFlag) -> Option<Scheduler> {
    match flag {
        SchedulerFlag::MhFallback | SchedulerFlag::MhPort => Some(Scheduler::Mh),
        SchedulerFlag::ShFallback | SchedulerFlag::ShPort => Some(Scheduler::Sh),
        SchedulerFlag::Flag1 | SchedulerFlag::Flag2 | SchedulerFlag::Flag3 => None,
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
    fn mh_gets_mh_fallback_unless_flags_are_given() {
        let defaults = RenderConfig::default();
        let config = service_config(&BTreeMap::new(), &defaults).unwrap();
        assert_eq!(config.scheduler, Scheduler::Mh);
        assert_eq!(config.scheduler_flags, vec![SchedulerFlag::MhFallback]);
        let config = service_config(
            &annotations(&[("balanced.io/scheduler-flags", "mh-port")]),
            &defaults,
        )
        .unwrap();
        assert_eq!(config.scheduler_flags, vec![SchedulerFlag::MhPort]);
        let config =
            service_config(&annotations(&[("balanced.io/scheduler", "rr")]), &defaults).unwrap();
        assert!(config.scheduler_flags.is_empty());
    }

    #[test]
    fn the_originals_scheduler_annotation_is_read_and_ours_wins() {
        let defaults = RenderConfig::default();
        let old = annotations(&[("balanced.demonware.net/ipvs-scheduler", "sh")]);
        assert_eq!(
            service_config(&old, &defaults).unwrap().scheduler,
            Scheduler::Sh
        );
        let both = annotations(&[
            ("balanced.demonware.net/ipvs-scheduler", "sh"),
            ("balanced.io/scheduler", "rr"),
        ]);
        assert_eq!(
            service_config(&both, &defaults).unwrap().scheduler,
            Scheduler::Rr
        );
    }

    #[test]
    fn invalid_values_are_errors_naming_the_annotation() {
        let defaults = RenderConfig::default();
        let bad = annotations(&[
            ("balanced.demonware.net/ipvs-scheduler", "hrw"),
            ("balanced.io/forwarding", "nat"),
            ("balanced.io/persistence-timeout", "1500ms"),
        ]);
        let errors = service_config(&bad, &defaults).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with(
            "annotation balanced.demonware.net/ipvs-scheduler \"hrw\": unknown scheduler"
        ));
        assert_eq!(
            text[1],
            "annotation balanced.io/forwarding \"nat\": expected tunnel, direct or masquerade"
        );
        assert!(text[2].contains("whole number of seconds"), "{}", text[2]);
    }

    #[test]
    fn flags_must_match_the_scheduler() {
        let defaults = RenderConfig::default();
        let bad = annotations(&[
            ("balanced.io/scheduler", "rr"),
            ("balanced.io/scheduler-flags", "sh-port"),
        ]);
        let errors = service_config(&bad, &defaults).unwrap_err();
        assert_eq!(errors[0].message, "sh-port needs scheduler sh, not rr");
    }

    #[test]
    fn gue_needs_a_port_and_encapsulation_needs_tunnel() {
        let defaults = RenderConfig::default();
        let gue = annotations(&[
            ("balanced.io/tunnel-encapsulation", "gue"),
            ("balanced.io/tunnel-port", "6080"),
        ]);
        let config = service_config(&gue, &defaults).unwrap();
        assert_eq!(config.forwarding.encapsulation, Some(Encapsulation::Gue));
        assert_eq!(config.forwarding.port, Some(6080));
        let no_port = annotations(&[("balanced.io/tunnel-encapsulation", "gue")]);
        assert!(service_config(&no_port, &defaults).is_err());
        let direct = annotations(&[
            ("balanced.io/forwarding", "direct"),
            ("balanced.io/tunnel-encapsulation", "gre"),
        ]);
        assert!(service_config(&direct, &defaults).is_err());
    }

    #[test]
    fn unknown_balanced_annotations_are_listed() {
        let a = annotations(&[
            ("balanced.io/schedular", "rr"),
            ("balanced.io/scheduler", "rr"),
        ]);
        assert_eq!(unknown(&a), vec!["balanced.io/schedular"]);
    }
}
