//! Logging setup: `tracing` to stderr, as text or one JSON object per line (`--log-format`).
//! Levels come from `BALANCED_LOG`, else `RUST_LOG`, else `info`. Standard output stays free
//! for what a command prints (plans, status, schemas), so it can be piped.
//!
//! Lines go straight to stderr, one `write` each, except inside [`held`]: a converge that logs
//! a hundred thousand one-line diffs at once writes them in 64 KiB chunks instead, which on a
//! slow machine is seconds of system calls saved.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = std::env::var("BALANCED_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A second initialisation (tests) keeps the first subscriber; that is not an error here.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Lines logged inside [`held`] and not yet written.
static HELD: Hold = Hold(Mutex::new(None));
const HELD_BYTES: usize = 64 * 1024;

/// Runs `f` with log lines held back and written in chunks, all of them by the time it
/// returns (or unwinds). Lines of other threads in that time are held too, in order.
pub fn held<T>(f: impl FnOnce() -> T) -> T {
    HELD.run(f)
}

/// Held lines; `None` outside a hold.
struct Hold(Mutex<Option<Vec<u8>>>);

impl Hold {
    fn lines(&self) -> std::sync::MutexGuard<'_, Option<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Release<'a>(&'a Hold);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if let Some(lines) = self.0.lines().take() {
                    let _ = std::io::stderr().write_all(&lines);
                }
            }
        }
        {
            let mut lines = self.lines();
            if lines.is_some() {
                drop(lines);
                return f();
            }
            *lines = Some(Vec::with_capacity(HELD_BYTES));
        }
        let _release = Release(self);
        f()
    }

    /// Writes `line` to `out`, or holds it while lines are held (writing the held chunk to
    /// `out` once it is full).
    fn write_or_hold(&self, line: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let mut held = self.lines();
        match held.as_mut() {
            Some(lines) => {
                lines.extend_from_slice(line);
                if lines.len() >= HELD_BYTES {
                    out.write_all(lines)?;
                    lines.clear();
                }
                Ok(())
            }
            None => {
                drop(held);
                out.write_all(line)
            }
        }
    }
}

/// stderr, through [`HELD`] while lines are held.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        HELD.write_or_hold(line, &mut std::io::stderr())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_wait_for_the_end_or_a_full_chunk() {
        let hold = Hold(Mutex::new(None));
        let held_bytes = || hold.lines().as_ref().map(Vec::len);
        let mut out = Vec::new();
        let inside = hold.run(|| {
            hold.write_or_hold(b"one line\n", &mut out).unwrap();
            let after_one = (held_bytes(), out.len());
            // A nested hold changes nothing; the outer one writes.
            hold.run(|| hold.write_or_hold(b"two\n", &mut out).unwrap());
            let after_two = (held_bytes(), out.len());
            hold.write_or_hold(&vec![b'x'; HELD_BYTES], &mut out)
                .unwrap();
            (after_one, after_two, (held_bytes(), out.len()))
        });
        assert_eq!(
            inside,
            ((Some(9), 0), (Some(13), 0), (Some(0), 13 + HELD_BYTES))
        );
        assert!(out.starts_with(b"one line\ntwo\nxxx"));
        assert_eq!(held_bytes(), None);
        hold.write_or_hold(b"straight\n", &mut out).unwrap();
        assert!(out.ends_with(b"xstraight\n"));
    }
}
