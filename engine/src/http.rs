//! The operations endpoint of `balanced run` (`--metrics-addr`, default `127.0.0.1:9480`):
//! `/metrics` (OpenMetrics text), `/healthz`, `/readyz` and `/status` (the status document as
//! JSON, as `balanced status --output json` prints it from the state directory).
//!
//! The backend role (`balanced run --role backend`) serves the same four paths from its own
//! [`Endpoints`] (`crate::backend::metrics`).
//!
//! A minimal HTTP/1.1 responder — GET only, one request per connection, `connection: close` —
//! on its own thread with its own small tokio runtime, so a scrape never waits for a converge
//! and a long converge never delays a scrape: four fixed endpoints need no web framework.
//! Deciding the answer ([`respond`], [`health`], [`readiness`]) is pure.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::error::EngineError;
use crate::state_dir::{StateDir, write_atomic};

use crate::metrics::{Liveness, Telemetry};

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9480";

/// Grace added to twice the resync interval before the loop counts as stuck: one converge of a
/// large node may take a while.
pub const LOOP_GRACE: Duration = Duration::from_secs(30);

/// `--metrics-addr`: an address to listen on, or `''`/`off` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "off" => Ok(MetricsAddr(None)),
            addr => addr
                .parse()
                .map(|a| MetricsAddr(Some(a)))
                .map_err(|e| format!("{addr}: not ADDRESS:PORT, '' or off: {e}")),
        }
    }
}

/// `/healthz`: the process is alive and its event loop turns — the last turn is at most
/// 2 × resyncInterval + [`LOOP_GRACE`] ago (the loop wakes at least every resyncInterval).
/// Before the first turn, the same limit counts from the start.
pub fn health(l: &Liveness, now: Instant) -> Result<String, String> {
    let limit = 2 * l.resync_interval + LOOP_GRACE;
    let last = l.last_iteration.unwrap_or(l.started);
    let age = now.saturating_duration_since(last);
    if age <= limit {
        Ok(format!("ok: the loop turned {}s ago\n", age.as_secs()))
    } else {
        Err(format!(
            "the event loop has not turned for {}s (limit {}s)\n",
            age.as_secs(),
            limit.as_secs()
        ))
    }
}

/// `/readyz`: the last observation of the dataplane worked, the last converge succeeded, and
/// it did so at most 2 × resyncInterval ago.
pub fn readiness(l: &Liveness, now: Instant) -> Result<String, String> {
    match l.last_observe {
        None => return Err("the dataplane was not observed yet\n".to_owned()),
        Some((_, false)) => return Err("the last observation of the dataplane failed\n".into()),
        Some(_) => {}
    }
    match l.last_converge {
        None => return Err("no converge yet\n".to_owned()),
        Some((_, false)) => return Err("the last converge failed\n".to_owned()),
        Some(_) => {}
    }
    let limit = 2 * l.resync_interval;
    match l.last_success {
        Some(at) if now.saturating_duration_since(at) <= limit => Ok(format!(
            "ok: converged {}s ago\n",
            now.saturating_duration_since(at).as_secs()
        )),
        _ => Err(format!(
            "no successful converge in the last {}s\n",
            limit.as_secs()
        )),
    }
}

/// A response: status code, content type, body.
pub type Response = (u16, &'static str, String);

/// What the four paths answer, for the role that serves them.
pub trait Endpoints: Send + Sync {
    /// `/metrics`: the OpenMetrics text.
    fn metrics(&self) -> String;
    /// `/healthz`: the body when alive, else why not.
    fn health(&self, now: Instant) -> Result<String, String>;
    /// `/readyz`: the body when ready, else why not.
    fn readiness(&self, now: Instant) -> Result<String, String>;
    /// `/status`: the status document as pretty JSON.
    fn status(&self) -> Result<String, serde_json::Error>;
}

impl Endpoints for Telemetry {
    fn metrics(&self) -> String {
        self.encode()
    }
    fn health(&self, now: Instant) -> Result<String, String> {
        health(&self.liveness(), now)
    }
    fn readiness(&self, now: Instant) -> Result<String, String> {
        readiness(&self.liveness(), now)
    }
    fn status(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.view().status)
    }
}

/// The response to one request line (`GET /metrics HTTP/1.1`).
pub fn respond(request_line: &str, endpoints: &dyn Endpoints, now: Instant) -> Response {
    let mut words = request_line.split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    if method != "GET" {
        return (405, "text/plain", "only GET\n".to_owned());
    }
    let judged = |result: Result<String, String>| match result {
        Ok(body) => (200, "text/plain", body),
        Err(body) => (503, "text/plain", body),
    };
    match path {
        "/metrics" => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            endpoints.metrics(),
        ),
        "/healthz" => judged(endpoints.health(now)),
        "/readyz" => judged(endpoints.readiness(now)),
        "/status" => match endpoints.status() {
            Ok(mut body) => {
                body.push('\n');
                (200, "application/json", body)
            }
            Err(e) => (
                500,
                "text/plain",
                format!("cannot render the status: {e}\n"),
            ),
        },
        _ => (
            404,
            "text/plain",
            "not found (try /metrics, /healthz, /readyz, /status)\n".to_owned(),
        ),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    }
}

/// The file in the state directory that holds the bound address (`127.0.0.1:9480`), so a
/// test or a script can find an ephemeral port.
pub const ADDRESS_FILE: &str = "metrics-address";

/// Listens on `addr` (when not off), logs the bound address, writes it to the state directory
/// and serves from a thread of its own. An address that cannot be bound is logged as an error
/// and the daemon runs without the endpoint: converging matters more than being watched (a
/// readiness probe then fails, which shows it).
pub fn start(
    addr: MetricsAddr,
    endpoints: Arc<dyn Endpoints>,
    state: &StateDir,
) -> Result<Option<SocketAddr>, EngineError> {
    let file = state.root().join(ADDRESS_FILE);
    let Some(addr) = addr.0 else {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EngineError::io(&file, e)),
            _ => Ok(None),
        };
    };
    let _ = std::fs::remove_file(&file);
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            error!("cannot listen on {addr} for /metrics and health; running without them: {e}");
            return Ok(None);
        }
    };
    let bound = listener
        .local_addr()
        .map_err(|e| EngineError::Runtime(format!("metrics listener on {addr}: {e}")))?;
    write_atomic(&file, format!("{bound}\n").as_bytes()).map_err(|e| EngineError::io(&file, e))?;
    spawn(listener, endpoints)
        .map_err(|e| EngineError::Runtime(format!("cannot start the metrics server: {e}")))?;
    info!(address = %bound, "serving /metrics, /healthz, /readyz and /status");
    Ok(Some(bound))
}

/// Serves on `listener` from a thread of its own until the process ends.
pub fn spawn(
    listener: std::net::TcpListener,
    endpoints: Arc<dyn Endpoints>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("balanced-http".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        warn!("metrics endpoint: {e}");
                        return;
                    }
                };
                serve(listener, endpoints).await;
            });
        })
}

async fn serve(listener: TcpListener, endpoints: Arc<dyn Endpoints>) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut read = 0;
            while read < buffer.len() {
                match stream.read(&mut buffer[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buffer[..read]);
            let line = head.lines().next().unwrap_or_default();
            let (code, content_type, body) = respond(line, &*endpoints, Instant::now());
            let response = format!(
                "HTTP/1.1 {code} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                reason(code),
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Failure;

    fn liveness(now: Instant) -> Liveness {
        Liveness {
            started: now,
            last_iteration: None,
            last_observe: None,
            last_converge: None,
            last_success: None,
            last_success_unix: None,
            resync_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn metrics_addr_accepts_an_address_or_off() {
        assert_eq!(
            "127.0.0.1:0".parse::<MetricsAddr>().unwrap(),
            MetricsAddr(Some("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!("".parse::<MetricsAddr>().unwrap(), MetricsAddr(None));
        assert_eq!("off".parse::<MetricsAddr>().unwrap(), MetricsAddr(None));
        assert!("localhost".parse::<MetricsAddr>().is_err());
    }

    #[test]
    fn healthz_fails_once_the_loop_stops_turning() {
        let t0 = Instant::now();
        let mut l = liveness(t0);
        assert!(
            health(&l, t0 + Duration::from_secs(50)).is_ok(),
            "start grace"
        );
        assert!(health(&l, t0 + Duration::from_secs(51)).is_err());
        l.last_iteration = Some(t0 + Duration::from_secs(40));
        assert!(health(&l, t0 + Duration::from_secs(90)).is_ok());
        assert!(health(&l, t0 + Duration::from_secs(91)).is_err());
    }

    #[test]
    fn readyz_needs_a_working_observation_and_a_recent_successful_converge() {
        let t0 = Instant::now();
        let mut l = liveness(t0);
        assert!(readiness(&l, t0).is_err(), "nothing yet");
        l.last_observe = Some((t0, true));
        l.last_converge = Some((t0, true));
        l.last_success = Some(t0);
        assert!(readiness(&l, t0 + Duration::from_secs(20)).is_ok());
        assert!(
            readiness(&l, t0 + Duration::from_secs(21)).is_err(),
            "too old"
        );
        l.last_observe = Some((t0, false));
        assert!(readiness(&l, t0).is_err(), "observation failed");
        l.last_observe = Some((t0, true));
        l.last_converge = Some((t0, false));
        assert!(readiness(&l, t0).is_err(), "converge failed");
    }

    #[test]
    fn endpoints_answer_with_their_codes() {
        let telemetry = Telemetry::new(false);
        let now = Instant::now();
        assert_eq!(respond("GET /readyz HTTP/1.1", &telemetry, now).0, 503);
        telemetry.observed(true);
        telemetry.converged(&[], &Vec::<Failure>::new(), true, Duration::ZERO);
        assert_eq!(respond("GET /readyz HTTP/1.1", &telemetry, now).0, 200);
        assert_eq!(respond("GET /healthz HTTP/1.1", &telemetry, now).0, 200);
        let (code, kind, body) = respond("GET /status HTTP/1.1", &telemetry, now);
        assert_eq!((code, kind), (200, "application/json"));
        let document: crate::status::StatusDocument = serde_json::from_str(&body).unwrap();
        assert_eq!(document, crate::status::StatusDocument::default());
        let (code, _, body) = respond("GET /metrics?x=1 HTTP/1.1", &telemetry, now);
        assert_eq!(code, 200);
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(respond("GET /nope HTTP/1.1", &telemetry, now).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", &telemetry, now).0, 405);
    }
}
