//! Kubernetes Events for allocations and problems, published off the render path: callers
//! queue a [`Notice`]; one task publishes them through kube-runtime's `Recorder` (which
//! aggregates repeats into series). A full queue drops the notice with a log line rather than
//! slow rendering down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;

/// One Event to publish about one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub reference: ObjectReference,
    pub warning: bool,
    /// What the exporter was doing: `Render` or `Allocate`.
    pub action: &'static str,
    pub reason: String,
    pub note: String,
}

impl Notice {
    pub fn new(
        service: &Service,
        warning: bool,
        action: &'static str,
        reason: &str,
        note: String,
    ) -> Self {
        Notice {
            reference: service.object_ref(&()),
            warning,
            action,
            reason: reason.to_owned(),
            note,
        }
    }
}

/// The sending side, cloned into every task that reports. Every notice is logged; it is
/// queued for publishing only while publishing is on — on the Lease holder, so replicas and
/// render-only exporters do not repeat each Event.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<Notice>,
    publishing: Arc<AtomicBool>,
}

pub fn channel(capacity: usize) -> (Events, mpsc::Receiver<Notice>) {
    let (tx, rx) = mpsc::channel(capacity);
    let events = Events {
        tx,
        publishing: Arc::new(AtomicBool::new(false)),
    };
    (events, rx)
}

impl Events {
    pub fn set_publishing(&self, on: bool) {
        self.publishing.store(on, Ordering::Relaxed);
    }

    pub fn send(&self, notice: Notice) {
        if notice.warning {
            tracing::warn!(reason = %notice.reason, "{}", notice.note);
        } else {
            tracing::info!(reason = %notice.reason, "{}", notice.note);
        }
        if !self.publishing.load(Ordering::Relaxed) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(notice) {
            tracing::warn!("event queue full; an Event was not published");
        }
    }
}

/// Publishes queued notices until every sender is gone.
pub async fn publish(recorder: Recorder, mut rx: mpsc::Receiver<Notice>) {
    while let Some(notice) = rx.recv().await {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.clone(),
            note: Some(notice.note.chars().take(1024).collect()),
            action: notice.action.to_owned(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &notice.reference).await {
            tracing::warn!(error = %e, reason = %notice.reason, "publishing an Event failed");
        }
    }
}
