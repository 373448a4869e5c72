//! The daemon's status file, written off the event loop and out of its way.
//!
//! At 10,000 services × 10 destinations the status document is about 40 MB of JSON: some
//! 60 ms to write on a fast host, two seconds in the QEMU test guest. Written in the loop after
//! every converge, it held up the next edit that long, and a stream of EndpointSlice updates
//! kept the daemon writing status rather than converging. Written by a thread at the same
//! time as the loop worked, it slowed a no-change resync in the one-CPU guest by a third (by a
//! tenth under `SCHED_IDLE`). So a thread writes it, and only while the loop is idle:
//! - the loop holds a [`Busy`] guard while it handles anything; the writer waits for the
//!   loop to be idle and gives way (drops the write, keeps the file as it was) as soon as the
//!   loop is busy again, then starts over with the newest document when it is idle;
//! - the newest document wins: one handed over while another waits replaces it;
//! - writes start at least [`MIN_INTERVAL`] apart, so a steady stream of converges costs a
//!   bounded share of a CPU; the first one after a quiet spell starts at once;
//! - a file older than [`MAX_AGE`] is written even while the loop is busy, so it never falls
//!   further behind than that;
//! - the thread runs under `SCHED_IDLE`, and never frees a document: one written or replaced
//!   goes back to the loop, which frees it at its next hand-over. (Freeing 100,000 allocations
//!   made by the loop's thread takes the allocator's lock of the loop's arena, and a thread
//!   that rarely runs must not hold that lock while the loop allocates.)
//! - [`StatusWriter::finish`] (and dropping the writer) writes what still waits, then stops:
//!   after `run` ends, the file is its last converge's.
//!
//! `/status` and the metrics do not wait for the file: the daemon publishes the same document
//! to [`crate::metrics::Telemetry`] as it hands it over here.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error};

use crate::error::EngineError;
use crate::metrics::NodeView;
use crate::state_dir::StateDir;
use crate::status::StatusDocument;

/// The least time from the start of one write to the start of the next.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How far the file may fall behind while the loop stays busy.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// Writes one document; the write gives way (fails) when the function it is given says so.
pub type Write = dyn FnMut(&StatusDocument, &dyn Fn() -> bool) -> Result<(), EngineError> + Send;

/// The writing thread and the document waiting for it.
pub struct StatusWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// While alive, the daemon's loop is working: the writer waits, or gives way.
pub struct Busy {
    shared: Arc<Shared>,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    waiting: Option<Arc<NodeView>>,
    /// Documents the writer is done with, for the loop's thread to free.
    spent: Vec<Arc<NodeView>>,
    busy: bool,
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
        Self::with(
            MIN_INTERVAL,
            MAX_AGE,
            Box::new(move |status, give_way| state.write_status_giving_way(status, give_way)),
        )
    }

    /// Writes each document with `write`, writes starting at least `min_interval` apart and
    /// not giving way once the last one written is `max_age` old.
    pub fn with(
        min_interval: Duration,
        max_age: Duration,
        mut write: Box<Write>,
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
                let shared = theirs;
                let mut last_start: Option<Instant> = None;
                let mut last_written = Instant::now();
                loop {
                    let overdue = last_written + max_age;
                    let due = last_start.map(|t| t + min_interval);
                    let Some(view) = next(&shared, due, overdue) else {
                        break;
                    };
                    last_start = Some(Instant::now());
                    let gave_way = Cell::new(false);
                    let give_way = || {
                        let slot = shared.lock();
                        let yes = slot.busy && !slot.stopping && Instant::now() < overdue;
                        gave_way.set(yes);
                        yes
                    };
                    match write(&view.status, &give_way) {
                        Ok(()) => last_written = Instant::now(),
                        Err(_) if gave_way.get() => {
                            debug!("status write gave way to the loop; it starts over when idle");
                            // Starting over is not held to the interval.
                            last_start = None;
                        }
                        Err(e) => error!("status not written: {e}"),
                    }
                    let mut slot = shared.lock();
                    if gave_way.get() && slot.waiting.is_none() {
                        slot.waiting = Some(view);
                    } else {
                        slot.spent.push(view);
                    }
                }
            })
            .map_err(|e| EngineError::Runtime(format!("cannot start the status writer: {e}")))?;
        Ok(StatusWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands a document over; it replaces one still waiting. Frees, on the caller's thread,
    /// the one replaced and those the writer is done with.
    pub fn submit(&self, view: Arc<NodeView>) {
        let freed = {
            let mut slot = self.shared.lock();
            let replaced = slot.waiting.replace(view);
            (replaced, std::mem::take(&mut slot.spent))
        };
        self.shared.changed.notify_one();
        drop(freed);
    }

    /// Marks the loop busy until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.shared.lock().busy = true;
        Busy {
            shared: self.shared.clone(),
        }
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

impl Drop for Busy {
    fn drop(&mut self) {
        self.shared.lock().busy = false;
        self.shared.changed.notify_one();
    }
}

/// The next document to write, once one waits, `due` has come and the loop is idle (or the
/// file is `overdue`); at once when stopping. `None` when stopping with nothing left.
fn next(shared: &Shared, due: Option<Instant>, overdue: Instant) -> Option<Arc<NodeView>> {
    let mut slot = shared.lock();
    loop {
        let now = Instant::now();
        if slot.waiting.is_none() {
            if slot.stopping {
                return None;
            }
            slot = shared.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let wake = match due {
            _ if slot.stopping => None,
            Some(due) if due > now => Some(due),
            _ if slot.busy && overdue > now => Some(overdue),
            _ => None,
        };
        let Some(wake) = wake else {
            return slot.waiting.take();
        };
        slot = shared
            .changed
            .wait_timeout(slot, wake - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
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

    const LONG: Duration = Duration::from_secs(3600);

    fn view(n: usize) -> Arc<NodeView> {
        Arc::new(NodeView {
            status: StatusDocument {
                differences: vec![n.to_string()],
                ..StatusDocument::default()
            },
            ..NodeView::default()
        })
    }

    /// A writer whose writes report the document's number, then wait for `release`.
    fn gated(
        min_interval: Duration,
        max_age: Duration,
    ) -> (StatusWriter, mpsc::Receiver<String>, mpsc::Sender<()>) {
        let (wrote, written) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let writer = StatusWriter::with(
            min_interval,
            max_age,
            Box::new(move |status, _| {
                wrote.send(status.differences[0].clone()).unwrap();
                let _ = released.recv();
                Ok(())
            }),
        )
        .unwrap();
        (writer, written, release)
    }

    #[test]
    fn the_newest_document_replaces_those_waiting_behind_a_write() {
        let (writer, written, release) = gated(Duration::ZERO, LONG);
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
        let (writer, written, release) = gated(interval, LONG);
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
    fn finish_writes_what_waits_without_waiting_for_the_interval_or_the_loop() {
        let (writer, written, release) = gated(LONG, LONG);
        drop(release);
        writer.submit(view(1));
        assert_eq!(written.recv().unwrap(), "1");
        let busy = writer.busy();
        writer.submit(view(2));
        let finishing = Instant::now();
        writer.finish();
        assert_eq!(written.try_recv().unwrap(), "2", "finish writes what waits");
        assert!(finishing.elapsed() < LONG, "finish waited");
        drop(busy);
    }

    #[test]
    fn nothing_is_written_while_the_loop_is_busy() {
        let (writer, written, release) = gated(Duration::ZERO, LONG);
        drop(release);
        let busy = writer.busy();
        writer.submit(view(1));
        assert!(
            written.recv_timeout(Duration::from_millis(300)).is_err(),
            "written while busy"
        );
        drop(busy);
        assert_eq!(
            written.recv_timeout(Duration::from_secs(10)).unwrap(),
            "1",
            "written once idle"
        );
    }

    /// A write in steps: it reports each start, then asks `give_way` between steps, the way
    /// the state directory's write asks between 64 KiB.
    fn stepped(
        max_age: Duration,
        steps: usize,
    ) -> (StatusWriter, mpsc::Receiver<String>, mpsc::Receiver<String>) {
        let (started, starts) = mpsc::channel();
        let (finished, ends) = mpsc::channel();
        let writer = StatusWriter::with(
            Duration::ZERO,
            max_age,
            Box::new(move |status, give_way| {
                let n = status.differences[0].clone();
                started.send(n.clone()).unwrap();
                for _ in 0..steps {
                    std::thread::sleep(Duration::from_millis(10));
                    if give_way() {
                        return Err(EngineError::Runtime("gave way".into()));
                    }
                }
                finished.send(n).unwrap();
                Ok(())
            }),
        )
        .unwrap();
        (writer, starts, ends)
    }

    #[test]
    fn a_write_gives_way_when_the_loop_gets_busy_and_starts_over_when_idle() {
        let (writer, starts, ends) = stepped(LONG, 50);
        writer.submit(view(1));
        assert_eq!(starts.recv().unwrap(), "1");
        let busy = writer.busy();
        assert!(
            ends.recv_timeout(Duration::from_secs(2)).is_err(),
            "the write went on while the loop was busy"
        );
        drop(busy);
        assert_eq!(starts.recv().unwrap(), "1", "started over");
        assert_eq!(ends.recv().unwrap(), "1", "and finished");
    }

    #[test]
    fn an_overdue_file_is_written_even_while_the_loop_stays_busy() {
        let (writer, starts, ends) = stepped(Duration::from_millis(200), 3);
        let busy = writer.busy();
        writer.submit(view(1));
        assert_eq!(
            ends.recv_timeout(Duration::from_secs(10)).unwrap(),
            "1",
            "written once overdue"
        );
        assert_eq!(starts.try_recv().unwrap(), "1", "without giving way");
        drop(busy);
    }

    #[test]
    fn documents_are_freed_by_the_thread_that_hands_them_over() {
        let (writer, written, release) = gated(Duration::ZERO, LONG);
        drop(release);
        let first = view(1);
        let weak = Arc::downgrade(&first);
        writer.submit(first);
        assert_eq!(written.recv().unwrap(), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.shared.lock().spent.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            weak.upgrade().is_some(),
            "the writer let go of the last reference on its own thread"
        );
        writer.submit(view(2));
        assert!(weak.upgrade().is_none(), "freed by the next hand-over");
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
