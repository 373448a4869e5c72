//! `balanced run` against a simulated node: edits of real files, a burst of edits, an atomic
//! swap of a symlinked directory (git-sync style) and a broken manifest, each seen through the
//! simulated state converging (or, for the broken file, not changing); an edited node config
//! is reloaded; SIGHUP resyncs; SIGTERM/SIGINT stop the daemon and leave the node as it is.

mod cli_support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use balanced_engine::model::NodeState;
use cli_support::*;

const WEB: &str = "198.51.100.10";

/// The daemon process; killed if a test fails before stopping it.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn start(node: &Node, dir: &Path, log: &Path) -> Self {
        let mut cmd = Command::new(BIN);
        clean_env(&mut cmd);
        let child = cmd
            .arg("run")
            .arg(dir)
            .args(["--debounce", "500ms", "--config"])
            .arg(&node.config)
            .arg("--dataplane")
            .arg(format!("sim:{}", node.sim.display()))
            .arg("--state-dir")
            .arg(&node.state)
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child: Some(child) }
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    fn wait(mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls the simulated node until `check` holds (the daemon commits after each converge).
fn eventually(node: &Node, what: &str, check: impl Fn(&NodeState) -> bool) -> NodeState {
    let start = Instant::now();
    loop {
        if let Ok(bytes) = fs::read(&node.sim)
            && let Ok(document) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Ok(state) = serde_json::from_value::<NodeState>(document["observed"].clone())
            && check(&state)
        {
            return state;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_file(node: &Node) -> serde_json::Value {
    fs::read(node.state.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn weight_of(state: &NodeState, backend: &str) -> Option<u32> {
    destinations(state, &tcp(WEB, 80))
        .into_iter()
        .find(|(a, _)| a == backend)
        .map(|(_, w)| w)
}

#[test]
fn the_daemon_follows_edits_bursts_and_an_atomic_symlink_swap() {
    let node = Node::new("  resyncInterval: 1h\n");
    let root = node.root.path();
    let rev1 = root.join("rev1");
    fs::create_dir_all(rev1.join("team")).unwrap();
    fs::write(
        rev1.join("web.yaml"),
        balancer("web", WEB, 80, &[("10.0.0.1", 1)]),
    )
    .unwrap();
    let current = root.join("current");
    symlink("rev1", &current).unwrap();
    let log = root.join("daemon.log");
    let daemon = Daemon::start(&node, &current, &log);

    eventually(&node, "initial converge", |s| {
        weight_of(s, "10.0.0.1") == Some(1)
    });

    // An edit of a real file.
    fs::write(
        rev1.join("web.yaml"),
        balancer("web", WEB, 80, &[("10.0.0.1", 2)]),
    )
    .unwrap();
    eventually(&node, "edit", |s| weight_of(s, "10.0.0.1") == Some(2));

    // A new file in a subdirectory.
    fs::write(
        rev1.join("team/api.yaml"),
        balancer("api", "198.51.100.20", 80, &[("10.0.1.1", 1)]),
    )
    .unwrap();
    eventually(&node, "new file", |s| {
        s.services.contains_key(&tcp("198.51.100.20", 80))
    });

    // A burst of edits converges once, to the last version.
    let converges_before = count_lines(&log, "converging");
    for weight in 3..=12 {
        fs::write(
            rev1.join("web.yaml"),
            balancer("web", WEB, 80, &[("10.0.0.1", weight)]),
        )
        .unwrap();
    }
    eventually(&node, "burst", |s| weight_of(s, "10.0.0.1") == Some(12));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        count_lines(&log, "converging"),
        converges_before + 1,
        "one converge per burst"
    );

    // git-sync: a new revision, then the link swapped atomically (rename over it).
    let rev2 = root.join("rev2");
    fs::create_dir_all(&rev2).unwrap();
    fs::write(
        rev2.join("web.yaml"),
        balancer("web", WEB, 80, &[("10.0.0.1", 12), ("10.0.0.3", 1)]),
    )
    .unwrap();
    fs::write(
        rev2.join("api.yaml"),
        balancer("api", "198.51.100.20", 80, &[("10.0.1.1", 1)]),
    )
    .unwrap();
    symlink("rev2", root.join("current.tmp")).unwrap();
    fs::rename(root.join("current.tmp"), &current).unwrap();
    eventually(&node, "symlink swap", |s| {
        weight_of(s, "10.0.0.3") == Some(1)
    });

    // Edits inside the new target are seen (the watch followed the swap).
    fs::write(
        rev2.join("web.yaml"),
        balancer("web", WEB, 80, &[("10.0.0.1", 12), ("10.0.0.3", 5)]),
    )
    .unwrap();
    let converged = eventually(&node, "edit after swap", |s| {
        weight_of(s, "10.0.0.3") == Some(5)
    });

    // A broken manifest changes nothing and is reported as stale.
    fs::write(
        rev2.join("web.yaml"),
        "apiVersion: balanced.io/v1\nkind: Balancer\nspec: [\n",
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let status = status_file(&node);
        let stale = status["manifests"].as_array().is_some_and(|manifests| {
            manifests
                .iter()
                .any(|m| m["name"] == "web" && m["state"] == "stale")
        });
        if stale {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "broken file never reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        node.observed(),
        converged,
        "a broken manifest changes nothing"
    );
    assert!(
        fs::read_to_string(&log).unwrap().contains("web.yaml"),
        "and is logged"
    );

    // SIGTERM: stop, leaving the node as it is.
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
    assert_eq!(node.observed(), converged);
}

#[test]
fn a_configmap_style_data_swap_is_followed() {
    let node = Node::new("  resyncInterval: 1h\n");
    let root = node.root.path();
    let volume = root.join("volume");
    let write_revision = |name: &str, weight: u32| {
        let dir = volume.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("web.yaml"),
            balancer("web", WEB, 80, &[("10.0.0.1", weight)]),
        )
        .unwrap();
    };
    // The kubelet's layout: ..data -> ..rev, web.yaml -> ..data/web.yaml.
    write_revision("..rev1", 1);
    symlink("..rev1", volume.join("..data")).unwrap();
    symlink("..data/web.yaml", volume.join("web.yaml")).unwrap();
    let log = root.join("daemon.log");
    let daemon = Daemon::start(&node, &volume, &log);
    eventually(&node, "initial converge", |s| {
        weight_of(s, "10.0.0.1") == Some(1)
    });

    write_revision("..rev2", 7);
    symlink("..rev2", volume.join("..data_tmp")).unwrap();
    fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    eventually(&node, "..data swap", |s| {
        weight_of(s, "10.0.0.1") == Some(7)
    });
    // status.json comes from the daemon's writer thread, within a second of the converge.
    let start = Instant::now();
    let status = loop {
        let status = status_file(&node);
        if status["manifests"].is_array() || start.elapsed() > Duration::from_secs(10) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status["manifests"].as_array().map(Vec::len),
        Some(1),
        "hidden ..data/..rev directories are not read as more manifests: {status}"
    );

    // An edited node config is reloaded and converged.
    let config = fs::read_to_string(&node.config).unwrap();
    fs::write(
        &node.config,
        format!("{config}  sysctls:\n    net.ipv4.vs.sloppy_tcp: \"1\"\n"),
    )
    .unwrap();
    eventually(&node, "node config reload", |s| {
        s.sysctls.get("net.ipv4.vs.sloppy_tcp").map(String::as_str) == Some("1")
    });

    // SIGHUP: resync now, and keep running.
    daemon.signal(libc::SIGHUP);
    let start = Instant::now();
    while count_lines(&log, "SIGHUP") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "SIGHUP not handled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    daemon.signal(libc::SIGINT);
    assert_eq!(daemon.wait(Duration::from_secs(10)), Some(0));
}

fn count_lines(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}
