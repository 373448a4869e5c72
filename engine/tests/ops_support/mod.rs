//! Shared by the operations tests: `balanced run` on a simulated node with its operations
//! endpoint on an ephemeral loopback port (found in `<state-dir>/metrics-address`), a tiny
//! HTTP client and polling helpers.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli_support::{BIN, Node, clean_env};

/// How long any expected change may take (resyncs are 1 s in these tests).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `balanced run` process; killed when dropped.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
}

impl Running {
    /// Starts `balanced run` over the node's manifests with `--metrics-addr 127.0.0.1:0` and
    /// `extra` arguments; waits until the endpoint's address is written.
    pub fn start(node: &Node, extra: &[&str], log: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd);
        let child = cmd
            .arg("run")
            .arg(&node.manifests)
            .args(["--debounce", "100ms", "--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .arg("--config")
            .arg(&node.config)
            .arg("--dataplane")
            .arg(format!("sim:{}", node.sim.display()))
            .arg("--state-dir")
            .arg(&node.state)
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start balanced run");
        let file = node.state.join("metrics-address");
        let start = Instant::now();
        let addr = loop {
            if let Ok(text) = fs::read_to_string(&file)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
            {
                break addr;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no metrics address written; log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Running { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET path` → (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.addr, path)
    }

    /// The `/metrics` text.
    pub fn scrape(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Scrapes until `check` holds on the metrics text; returns that text.
    pub fn metrics_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.scrape();
            if check(&text) {
                return text;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what}; last scrape:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `path` until it answers `code`.
    pub fn until_code(&self, path: &str, code: u16) -> String {
        let start = Instant::now();
        loop {
            let (got, body) = self.get(path);
            if got == code {
                return body;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{path} still answers {got} (want {code}): {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET against the endpoint.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

/// The value of the sample whose line starts with `series` (name and labels exactly).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `{name="…",vip="…",protocol="tcp",port="…"}` of a TCP service.
pub fn tcp_labels(name: &str, vip: &str, port: u16) -> String {
    format!("{{name=\"{name}\",vip=\"{vip}\",protocol=\"tcp\",port=\"{port}\"}}")
}

/// The labels of a destination of a TCP service.
pub fn backend_labels(name: &str, vip: &str, port: u16, backend: &str) -> String {
    format!(
        "{{name=\"{name}\",vip=\"{vip}\",protocol=\"tcp\",port=\"{port}\",backend=\"{backend}\"}}"
    )
}
