//! Runs a closure inside a named network namespace (`/run/netns/NAME`, as `ip netns add` creates).
//! Sockets keep the namespace they were created in, so probes, the BMP listener and the netlink
//! watcher open their sockets through [`in_netns`] and then use them from any thread or task.
//! The closure runs on a fresh thread that enters the namespace and exits afterwards, so no other
//! thread (and no tokio worker) ever changes namespace.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    #[error("network namespace {name:?} is invalid: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("network namespace {name:?} not found at {path}")]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {name:?} (root or CAP_SYS_ADMIN is needed)")]
    Enter {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start a thread to enter network namespace {name:?}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the code run inside network namespace {name:?} panicked")]
    Panicked { name: String },
}

/// The path of a named namespace; refuses names that could escape [`NETNS_DIR`].
pub fn netns_path(name: &str) -> Result<PathBuf, NetnsError> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.contains('/') || name == "." || name == ".." {
        Some("contains '/' or is '.'/'..'")
    } else {
        None
    };
    match why {
        Some(why) => Err(NetnsError::InvalidName {
            name: name.to_string(),
            why,
        }),
        None => Ok(PathBuf::from(NETNS_DIR).join(name)),
    }
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    netns_path(name).map(|p| p.exists()).unwrap_or(false)
}

/// Runs `f` inside namespace `name`, or in the caller's namespace when `name` is `None`.
pub fn in_netns<T, F>(name: Option<&str>, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(name) = name else { return Ok(f()) };
    let path = netns_path(name)?;
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    let owned_name = name.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<T, NetnsError> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                name: owned_name,
                source,
            })?;
            Ok(f())
        })
        .map_err(|source| NetnsError::Thread {
            name: name.to_string(),
            source,
        })?;
    handle.join().map_err(|_| NetnsError::Panicked {
        name: name.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_netns_directory_are_refused() {
        for bad in ["", "..", "a/b", "../etc"] {
            assert!(
                matches!(netns_path(bad), Err(NetnsError::InvalidName { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            netns_path("ext").expect("valid"),
            PathBuf::from("/run/netns/ext")
        );
    }

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = in_netns(Some("vmbgp-no-such-netns"), || ()).expect_err("missing");
        assert!(err.to_string().contains("vmbgp-no-such-netns"), "{err}");
    }

    /// Enters a namespace this test creates (needs root, as the lab does; ci/test.sh runs as root).
    #[test]
    #[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
    fn closure_runs_inside_the_named_namespace() {
        let name = format!("vmbgp-host-test-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            ip(&["netns", "add", &name]),
            "`ip netns add` failed: this test needs root and iproute2"
        );
        struct Remove(String);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _guard = Remove(name.clone());
        let here = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
        let there = in_netns(Some(&name), || {
            std::fs::read_link("/proc/thread-self/ns/net")
        })
        .expect("enter")
        .expect("netns link");
        assert_ne!(here, there);
        assert!(exists(&name));
        // The caller's thread never moved.
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").expect("own netns"),
            here
        );
    }

    #[test]
    fn without_a_name_the_closure_runs_here() {
        assert_eq!(in_netns(None, || 41 + 1).expect("runs"), 42);
    }
}
