//! Logging setup: `tracing` to stderr, as text or one JSON object per line (`--log-format`).
//! Levels come from `BALANCED_LOG`, else `RUST_LOG`, else `info`. Standard output stays free
//! for what a command prints (plans, status, schemas), so it can be piped.
//!
//! Lines go straight to stderr, one `write` each, except inside [`held`]: a converge that logs
//! a hundred thousand one-line diffs at once writes them in 64 KiB chunks instead, which on a
//! slow machine is seconds of system calls saved.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Dispatch, Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    let filter = std::env::var("BALANCED_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    // A second initialisation (tests) keeps the first subscriber; that is not an error here.
    let _ = subscriber(format, filter, Stderr, ansi).try_init();
}

/// Lines at `filter`'s levels to `writer`. Every text line's values are sanitised of terminal
/// control characters, except in the one-line diffs of applied changes ([`is_change_line`]):
/// those hold addresses, ports, numbers and this program's own words, plus names from the
/// node config or the kernel — nothing a manifest says — and a converge from empty writes
/// a hundred thousand of them, for which the character-by-character sanitising pass cost as
/// much as all the rest of the formatting.
pub(crate) fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Dispatch
where
    W: for<'a> MakeWriter<'a> + Clone + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(fmt_layer(writer.clone(), ansi, false).with_filter(filter_fn(is_change_line)))
            .with(fmt_layer(writer, ansi, true).with_filter(filter_fn(|m| !is_change_line(m))))
            .into(),
        // JSON escapes control characters itself, in every line.
        LogFormat::Json => registry
            .with(fmt_layer(writer, ansi, true).json().flatten_event(true))
            .into(),
    }
}

/// The text layer every line goes through: [`Timestamps`], no target.
fn fmt_layer<S, W>(writer: W, ansi: bool, sanitise: bool) -> FmtLayer<S, W>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_timer(Timestamps::default())
        .with_ansi(ansi)
        .with_target(false)
        .with_ansi_sanitization(sanitise)
}

type FmtLayer<S, W> = tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, Timestamps>,
    W,
>;

/// The executor's line for an applied change (`+ destination ...`); its warnings and errors,
/// which quote the kernel, are not.
fn is_change_line(metadata: &Metadata<'_>) -> bool {
    metadata.target() == "balanced_engine::exec" && *metadata.level() == Level::INFO
}

thread_local! {
    /// The time the lines logged inside [`stamped`] carry instead of the clock's.
    static STAMP: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// Runs `f` with the lines it logs on this thread stamped `at` rather than with the time they
/// are written: a change line says when the dataplane made the change, even when it is
/// written a second later behind a hundred thousand others.
pub fn stamped<T>(at: SystemTime, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<SystemTime>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STAMP.set(self.0);
        }
    }
    let _restore = Restore(STAMP.replace(Some(at)));
    f()
}

/// UTC timestamps as `tracing`'s default timer writes them (`2026-11-28T01:47:29.235196Z`),
/// with the date and the time of day worked out once a second rather than for every line;
/// inside [`stamped`], its time.
#[derive(Default)]
struct Timestamps(Mutex<(u64, String)>);

impl FormatTime for Timestamps {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = STAMP
            .get()
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (second, text) = &mut *cached;
        if *second != now.as_secs() || text.is_empty() {
            *second = now.as_secs();
            *text = civil_time(*second);
        }
        write!(w, "{text}.{:06}Z", now.subsec_micros())
    }
}

/// `1970-01-01T00:00:00` for `seconds` after the epoch, in UTC (the days-to-civil-date
/// arithmetic of Howard Hinnant's `chrono`-compatible date algorithms).
fn civil_time(seconds: u64) -> String {
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let shifted = days as i64 + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        time / 3_600,
        time / 60 % 60,
        time % 60
    )
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
#[derive(Clone, Copy)]
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

/// A log sink for tests: what [`subscriber`] wrote to it.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(std::sync::Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl LogBuffer {
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8(bytes).expect("log lines are UTF-8")
    }
}

#[cfg(test)]
impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates from `date -u -d @SECONDS +%Y-%m-%dT%H:%M:%S`, leap days included.
    #[test]
    fn civil_time_is_what_date_says() {
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_164_800, "2024-02-29T00:00:00"),
            (1_795_837_649, "2026-11-28T03:47:29"),
            (4_102_444_799, "2099-12-31T23:59:59"),
        ] {
            assert_eq!(civil_time(seconds), text, "{seconds}");
        }
    }

    /// The same text as `tracing`'s default timer, to the second (the clock may tick between
    /// the two, so a differing pair is read again).
    #[test]
    fn timestamps_look_like_the_default_ones() {
        let format = |timer: &dyn FormatTime| {
            let mut text = String::new();
            timer.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        let ours = Timestamps::default();
        let theirs = tracing_subscriber::fmt::time::SystemTime;
        let same = (0..3).any(|_| {
            let (a, b) = (format(&ours), format(&theirs));
            assert_eq!(a.len(), "2026-11-28T03:47:29.123456Z".len(), "{a}");
            assert!(a.ends_with('Z'));
            a[..19] == b[..19]
        });
        assert!(same);
    }

    #[test]
    fn change_lines_skip_the_sanitising_and_every_other_line_keeps_it() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let buffer = LogBuffer::default();
            let dispatch = subscriber(format, EnvFilter::new("debug"), buffer.clone(), false);
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::info!(target: "balanced_engine::exec", "+ link \x07one");
                tracing::warn!(target: "balanced_engine::exec", "skipped \x07two");
                tracing::info!(target: "balanced_engine::daemon", "manifest \x07three");
                tracing::debug!(target: "balanced_engine::exec", "debug \x07four");
            });
            let text = buffer.text();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 4, "{format:?}: each line once: {text}");
            let escaped = |line: &str, word: &str| match format {
                LogFormat::Text => line.contains(&format!("\\x07{word}")),
                LogFormat::Json => line.contains(&format!("\\u0007{word}")),
            };
            let raw = |line: &str, word: &str| line.contains(&format!("\x07{word}"));
            // Text writes the change line's byte as it is; JSON escapes every line itself.
            match format {
                LogFormat::Text => assert!(raw(lines[0], "one"), "{}", lines[0]),
                LogFormat::Json => assert!(escaped(lines[0], "one"), "{}", lines[0]),
            }
            for (line, word) in lines[1..].iter().zip(["two", "three", "four"]) {
                assert!(
                    !raw(line, word) && escaped(line, word),
                    "{format:?}: {line}"
                );
            }
        }
    }

    /// Inside `stamped`, in both formats, lines carry its time, and the clock's again after.
    #[test]
    fn stamped_lines_carry_the_time_given() {
        // 2026-11-28T03:47:29.000042Z
        let at = UNIX_EPOCH + std::time::Duration::new(1_795_837_649, 42_000);
        for format in [LogFormat::Text, LogFormat::Json] {
            let buffer = LogBuffer::default();
            let dispatch = subscriber(format, EnvFilter::new("info"), buffer.clone(), false);
            tracing::dispatcher::with_default(&dispatch, || {
                stamped(at, || {
                    tracing::info!(target: "balanced_engine::exec", "+ address one");
                    tracing::error!(target: "balanced_engine::exec", "failed two");
                });
                tracing::info!(target: "balanced_engine::exec", "+ address three");
            });
            let text = buffer.text();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "{text}");
            for line in &lines[..2] {
                assert!(
                    line.contains("2026-11-28T03:47:29.000042Z"),
                    "{format:?}: {line}"
                );
            }
            assert!(!lines[2].contains("2026-11-28T03:47:29"), "{lines:?}");
            assert_eq!(STAMP.get(), None);
        }
    }

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
