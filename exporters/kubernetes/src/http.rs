//! `/metrics` and `/healthz` over a minimal HTTP/1.1 server: one request per connection, GET
//! only. Small on purpose: two fixed endpoints need no web framework.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/healthz` reports: healthy once every cache is synced and rendered.
#[derive(Debug, Default)]
pub struct Health {
    pub synced: AtomicBool,
}

/// The response to one request line.
pub fn respond(
    request_line: &str,
    metrics: &Metrics,
    health: &Health,
) -> (u16, &'static str, String) {
    let mut words = request_line.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method != "GET" {
        return (405, "text/plain", "only GET\n".to_owned());
    }
    match path {
        "/metrics" => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" if health.synced.load(Ordering::Relaxed) => {
            (200, "text/plain", "ok\n".to_owned())
        }
        "/healthz" => (
            503,
            "text/plain",
            "waiting for the initial lists\n".to_owned(),
        ),
        _ => (404, "text/plain", "not found\n".to_owned()),
    }
}

/// Serves until the listener fails.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        let health = health.clone();
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
            let (code, content_type, body) = respond(line, &metrics, &health);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::{Allocator, Pools};
    use crate::config::RenderConfig;
    use crate::fixtures::{service, with_ingress};

    #[test]
    fn healthz_waits_for_the_initial_lists() {
        let metrics = Metrics::default();
        let health = Health::default();
        assert_eq!(respond("GET /healthz HTTP/1.1", &metrics, &health).0, 503);
        health.synced.store(true, Ordering::Relaxed);
        assert_eq!(respond("GET /healthz HTTP/1.1", &metrics, &health).0, 200);
        assert_eq!(respond("GET /nope HTTP/1.1", &metrics, &health).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", &metrics, &health).0, 405);
    }

    #[test]
    fn metrics_show_pool_usage() {
        let metrics = Metrics::default();
        let pools = Pools::parse(&["public=198.51.100.0/30".to_owned()], None).unwrap();
        let mut allocator = Allocator::new(pools.clone(), std::time::Duration::ZERO);
        let held = with_ingress(service("shop", "a", &[80], 1), &["198.51.100.1"]);
        let plan = allocator.plan([&held], &RenderConfig::default(), std::time::Instant::now());
        metrics.record_plan(&pools, &plan);
        let (code, _, body) = respond("GET /metrics HTTP/1.1", &metrics, &Health::default());
        assert_eq!(code, 200);
        assert!(
            body.contains("balanced_exporter_pool_addresses{pool=\"public\",family=\"ipv4\"} 4.0"),
            "{body}"
        );
        assert!(
            body.contains(
                "balanced_exporter_pool_used_addresses{pool=\"public\",family=\"ipv4\"} 1.0"
            ),
            "{body}"
        );
        assert!(
            body.contains("# TYPE balanced_exporter_files_written counter"),
            "{body}"
        );
    }
}
