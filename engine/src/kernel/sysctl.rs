//! Sysctls through `/proc/sys`: `net.ipv4.vs.sloppy_tcp` is `/proc/sys/net/ipv4/vs/sloppy_tcp`.
//!
//! Values are compared as text with whitespace runs collapsed, so `32768\t60999` (what the
//! kernel prints) equals `32768 60999` (what a manifest says).

use std::io;
use std::path::{Path, PathBuf};

/// Where the sysctl tree is mounted (`/proc/sys`; a directory of files in tests).
#[derive(Debug, Clone)]
pub struct Sysctls {
    root: PathBuf,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls::new("/proc/sys")
    }
}

/// A sysctl name that cannot be a path below the root (empty parts, `..`, slashes).
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a sysctl name")]
pub struct BadName(pub String);

impl Sysctls {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Sysctls {
            root: root.as_ref().to_owned(),
        }
    }

    /// The file behind `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, BadName> {
        let mut path = self.root.clone();
        for part in name.split('.') {
            let ok = !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(BadName(name.to_owned()));
            }
            path.push(part);
        }
        Ok(path)
    }

    /// The current value, normalised; `None` when this kernel has no such sysctl.
    pub fn read(&self, name: &str) -> io::Result<Option<String>> {
        let path = self
            .path(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(normalize(&text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `value`. A missing sysctl is `ENOENT`, a refused value the kernel's errno
    /// (`EINVAL`).
    pub fn write(&self, name: &str, value: &str) -> io::Result<()> {
        let path = self
            .path(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Not `fs::write`: that would create a missing file in a test tree, and /proc/sys
        // refuses creation anyway.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
        io::Write::write_all(&mut file, format!("{value}\n").as_bytes())
    }
}

/// Collapses whitespace runs to one space and trims.
pub fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths_and_bad_names_are_refused() {
        let s = Sysctls::new("/proc/sys");
        assert_eq!(
            s.path("net.ipv4.vs.sloppy_tcp").expect("valid"),
            PathBuf::from("/proc/sys/net/ipv4/vs/sloppy_tcp")
        );
        for bad in ["", "net..ipv4", "net/ipv4", "net.ipv4.vs.*", ".net"] {
            assert!(s.path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn read_write_round_trip_in_a_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("net/ipv4/vs")).expect("mkdir");
        std::fs::write(dir.path().join("net/ipv4/vs/sloppy_tcp"), "0\n").expect("seed");
        std::fs::write(dir.path().join("net/ipv4/vs/range"), "32768\t60999\n").expect("seed");
        let s = Sysctls::new(dir.path());
        assert_eq!(
            s.read("net.ipv4.vs.sloppy_tcp").expect("read"),
            Some("0".into())
        );
        assert_eq!(
            s.read("net.ipv4.vs.range").expect("read"),
            Some("32768 60999".into())
        );
        s.write("net.ipv4.vs.sloppy_tcp", "1").expect("write");
        assert_eq!(
            s.read("net.ipv4.vs.sloppy_tcp").expect("read"),
            Some("1".into())
        );
        assert_eq!(s.read("net.ipv4.vs.missing").expect("read"), None);
        let err = s.write("net.ipv4.vs.missing", "1").expect_err("missing");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
