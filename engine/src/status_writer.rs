//! The daemon's status file, written off the event loop.
//!
//! At 10,000 services × 10 destinations the status document is about 40 MB of JSON: some
//! 60 ms to write on a fast host, two seconds in the QEMU test guest. Written in the loop after
//! every converge, it held up the next edit that long, and a stream of EndpointSlice updates
//! kept the daemon busy writing status rather than converging. Here a thread writes it:
//! - the newest document wins: one handed over while another waits replaces it, so a burst
//!   of converges costs a write or two, not one each;
//! - writes start at least [`MIN_INTERVAL`] apart, so a constant stream of converges costs a
//!   bounded share of a CPU; the first one after a quiet spell starts at once;
//! - the thread runs under `SCHED_IDLE`: on a node short of CPU, converging comes first and
//!   writing status after;
//! - [`StatusWriter::finish`] (and dropping the writer) writes what still waits, then stops:
//!   after `run` ends, the file is its last converge's.
//!
//! `/status` and the metrics do not wait for the file: the daemon publishes the same document
//! to [`crate::metrics::Telemetry`] as it hands it over here.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::error;

use crate::error::EngineError;
use crate::metrics::NodeView;
use crate::state_dir::StateDir;
use crate::status::StatusDocument;

/// The least time from the start of one write to the start of the next.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The writing thread and the document waiting for it.
pub struct StatusWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    waiting: Option<Arc<NodeView>>,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StatusWriter {
    /// Writes `status.json` of `state`.
    pub fn start(state: StateDir) -> Result<Self, EngineError> {
        Self::with(MIN_INTERVAL, move |status| state.write_status(status))
    }

    /// Writes each document with `write`, writes starting at least `min_interval` apart.
    pub fn with(
        min_interval: Duration,
        mut write: impl FnMut(&StatusDocument) -> Result<(), EngineError> + Send + 'static,
    ) -> Result<Self, EngineError> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("status-writer".into())
            .spawn(move || {
                lower_priority();
                let mut last_start: Option<Instant> = None;
                while let Some(view) = next(&theirs, last_start.map(|t| t + min_interval)) {
                    last_start = Some(Instant::now());
                    if let Err(e) = write(&view.status) {
                        error!("status not written: {e}");
                    }
                }
            })
            .map_err(|e| EngineError::Runtime(format!("cannot start the status writer: {e}")))?;
        Ok(StatusWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands a document over; it replaces one still waiting.
    pub fn submit(&self, view: Arc<NodeView>) {
        self.shared.lock().waiting = Some(view);
        self.shared.changed.notify_one();
    }

    /// Writes what still waits, at once, and stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next document to write, once one waits and `due` has come (or at once when stopping);
/// `None` when stopping with nothing left.
fn next(shared: &Shared, due: Option<Instant>) -> Option<Arc<NodeView>> {
    let mut slot = shared.lock();
    loop {
        if slot.waiting.is_some() {
            let now = Instant::now();
            match due {
                Some(due) if due > now && !slot.stopping => {
                    slot = shared
                        .changed
                        .wait_timeout(slot, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                _ => return slot.waiting.take(),
            }
        } else if slot.stopping {
            return None;
        } else {
            slot = shared.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// `SCHED_IDLE` for the calling thread only: it runs when no other thread wants the CPU. Left
/// as it is where that is refused.
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` lives across the call.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn view(n: usize) -> Arc<NodeView> {
        Arc::new(NodeView {
            status: StatusDocument {
                differences: vec![n.to_string()],
                ..StatusDocument::default()
            },
            ..NodeView::default()
        })
    }

    /// A writer whose writes report the document's number and then wait for `release`.
    fn gated(min_interval: Duration) -> (StatusWriter, mpsc::Receiver<String>, mpsc::Sender<()>) {
        let (wrote, written) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let writer = StatusWriter::with(min_interval, move |status| {
            wrote.send(status.differences[0].clone()).unwrap();
            let _ = released.recv();
            Ok(())
        })
        .unwrap();
        (writer, written, release)
    }

    #[test]
    fn the_newest_document_replaces_those_waiting_behind_a_write() {
        let (writer, written, release) = gated(Duration::ZERO);
        writer.submit(view(1));
        assert_eq!(written.recv().unwrap(), "1", "the first goes at once");
        for n in 2..=5 {
            writer.submit(view(n));
        }
        release.send(()).unwrap();
        assert_eq!(
            written.recv().unwrap(),
            "5",
            "2, 3 and 4 were never written"
        );
        release.send(()).unwrap();
        writer.finish();
        assert!(written.try_recv().is_err(), "nothing more: {written:?}");
    }

    #[test]
    fn writes_start_at_least_the_interval_apart() {
        let interval = Duration::from_millis(300);
        let (writer, written, release) = gated(interval);
        drop(release); // writes return at once
        let started = Instant::now();
        writer.submit(view(1));
        assert_eq!(written.recv().unwrap(), "1");
        writer.submit(view(2));
        assert_eq!(written.recv().unwrap(), "2");
        assert!(
            started.elapsed() >= interval,
            "the second write came {:?} after the first was handed over",
            started.elapsed()
        );
    }

    #[test]
    fn finish_writes_what_waits_without_waiting_for_the_interval() {
        let interval = Duration::from_secs(60);
        let (writer, written, release) = gated(interval);
        drop(release);
        writer.submit(view(1));
        assert_eq!(written.recv().unwrap(), "1");
        writer.submit(view(2));
        let finishing = Instant::now();
        writer.finish();
        assert_eq!(written.try_recv().unwrap(), "2", "finish writes what waits");
        assert!(
            finishing.elapsed() < interval,
            "finish waited for the interval"
        );
    }

    #[test]
    fn dropping_the_writer_writes_the_last_document_to_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let writer = StatusWriter::start(state.clone()).unwrap();
        writer.submit(view(1));
        writer.submit(view(2));
        drop(writer);
        let written = state.read_status().unwrap().expect("status.json");
        assert_eq!(written["differences"], serde_json::json!(["2"]));
    }
}
