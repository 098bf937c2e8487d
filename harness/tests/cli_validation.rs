//! Bad input through the real binary: every case exits 2 with a message naming the field and value,
//! and nothing is contacted (a listener standing in for the API server sees no connection).

use std::io::Write;

mod common;
use std::net::TcpListener;
use std::process::Command;

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Substrings the error output must contain (field, value, reason).
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "malformed CIDR",
        args: &["--supernet", "198.19.0.0/33"],
        expect: &["--supernet", "198.19.0.0/33", "not a valid IPv4 CIDR"],
    },
    Case {
        name: "CIDR with host bits",
        args: &["--supernet", "198.19.0.1/16"],
        expect: &["--supernet", "host bits", "198.19.0.0/16"],
    },
    Case {
        name: "malformed IP",
        args: &["--bgp-peer-ip", "198.18.0"],
        expect: &["--bgp-peer-ip", "198.18.0", "not a valid IPv4 address"],
    },
    Case {
        name: "range start after end",
        args: &[
            "--network",
            "shared",
            "--vm-ip-range",
            "198.19.0.100-198.19.0.10",
        ],
        expect: &[
            "--vm-ip-range",
            "198.19.0.100 is after range end 198.19.0.10",
        ],
    },
    Case {
        name: "range without end",
        args: &["--network", "shared", "--vm-ip-range", "198.19.0.10"],
        expect: &["--vm-ip-range", "expected START-END"],
    },
    Case {
        name: "range outside the subnet",
        args: &[
            "--network",
            "shared",
            "--subnet",
            "198.19.5.0/24",
            "--vm-ip-range",
            "198.19.6.10-198.19.6.20",
        ],
        expect: &[
            "--vm-ip-range",
            "not inside the network's subnet 198.19.5.0/24",
        ],
    },
    Case {
        name: "range holds the network address",
        args: &[
            "--network",
            "shared",
            "--subnet",
            "198.19.5.0/24",
            "--vm-ip-range",
            "198.19.5.0-198.19.5.20",
        ],
        expect: &["--vm-ip-range", "network address 198.19.5.0"],
    },
    Case {
        name: "range holds the broadcast address",
        args: &[
            "--network",
            "shared",
            "--subnet",
            "198.19.5.0/24",
            "--vm-ip-range",
            "198.19.5.200-198.19.5.255",
        ],
        expect: &["--vm-ip-range", "broadcast address 198.19.5.255"],
    },
    Case {
        name: "range holds the gateway",
        args: &[
            "--network",
            "shared",
            "--subnet",
            "198.19.5.0/24",
            "--vm-ip-range",
            "198.19.5.1-198.19.5.20",
        ],
        expect: &["--vm-ip-range", "gateway address 198.19.5.1"],
    },
    Case {
        name: "more live VMs than addresses (the seed's range)",
        args: &[
            "--iterations",
            "72",
            "--vm-count",
            "10",
            "--network",
            "shared",
            "--vm-ip-range",
            "192.168.100.10-192.168.100.100",
        ],
        expect: &[
            "--vm-ip-range",
            "capacity",
            "720 VMs live",
            "72 iterations × 10 VMs",
            "holds 91 addresses",
            "vm-bgp-churn",
        ],
    },
    Case {
        name: "CUDN name over 15 characters",
        args: &["--name-prefix", "averyverylongname"],
        expect: &[
            "--name-prefix",
            "averyverylongname-2",
            "19 characters",
            "15",
        ],
    },
    Case {
        name: "zero iterations",
        args: &["--iterations", "0"],
        expect: &["--iterations", "\"0\"", "must be at least 1"],
    },
    Case {
        name: "zero VMs",
        args: &["--vm-count", "0"],
        expect: &["--vm-count", "must be at least 1"],
    },
    Case {
        name: "more VMs than one run may plan (fuzz finding F2: memory exhaustion)",
        args: &[
            "--profile",
            "vm-bgp-churn",
            "--iterations",
            "400000000",
            "--vm-count",
            "2",
        ],
        expect: &[
            "--iterations",
            "\"400000000\"",
            "800000000 VMs",
            "more than the 100000",
        ],
    },
    Case {
        name: "zero qps",
        args: &["--qps", "0"],
        expect: &["--qps", "must be at least 1"],
    },
    Case {
        name: "zero burst",
        args: &["--burst", "0"],
        expect: &["--burst", "must be at least 1"],
    },
    Case {
        name: "burst below qps",
        args: &["--qps", "50", "--burst", "10"],
        expect: &["--burst", "\"10\"", "at least qps (50"],
    },
    Case {
        name: "unknown profile",
        args: &["--profile", "vm-bgp-fast"],
        expect: &["unknown profile \"vm-bgp-fast\"", "vm-bgp-churn"],
    },
    Case {
        name: "missing profile file",
        args: &["--profile", "/nonexistent/profile.yaml"],
        expect: &["cannot read profile file /nonexistent/profile.yaml"],
    },
    Case {
        name: "session polling without a way to the router's vty",
        args: &["--session-source", "poll"],
        expect: &[
            "--session-source",
            "\"poll\"",
            "--frr-vty-dir",
            "--frr-exec",
        ],
    },
    Case {
        name: "session poll interval too short",
        args: &[
            "--session-source",
            "poll",
            "--frr-vty-dir",
            "/run/frr",
            "--session-poll-interval",
            "10ms",
        ],
        expect: &["--session-poll-interval", "\"10ms\"", "100ms to 1m"],
    },
    Case {
        name: "malformed session poll interval",
        args: &["--session-poll-interval", "soon"],
        expect: &["--session-poll-interval", "soon"],
    },
    Case {
        name: "quoted vtysh prefix",
        args: &[
            "--session-source",
            "poll",
            "--frr-exec",
            "podman exec 'frr'",
        ],
        expect: &[
            "--frr-exec",
            "podman exec 'frr'",
            "quotes are not supported",
        ],
    },
    Case {
        name: "vty dir and vtysh prefix together",
        args: &["--frr-vty-dir", "/run/frr", "--frr-exec", "podman exec frr"],
        expect: &["--frr-vty-dir", "--frr-exec", "cannot be used with"],
    },
    Case {
        name: "malformed duration",
        args: &["--timeout", "4x"],
        expect: &["--timeout", "\"4x\"", "not a valid duration"],
    },
    Case {
        name: "malformed ES URL",
        args: &[
            "--es-server",
            "not a url",
            "--es-index",
            "ripsaw-kube-burner-vm-bgp",
        ],
        expect: &["--es-server", "not a valid URL"],
    },
    Case {
        name: "ES URL with another scheme",
        args: &[
            "--es-server",
            "ftp://es.example",
            "--es-index",
            "ripsaw-kube-burner-vm-bgp",
        ],
        expect: &["--es-server", "http:// or https://"],
    },
    Case {
        name: "ES server without index",
        args: &["--es-server", "https://es.example:9200"],
        expect: &["--es-server", "must be given together"],
    },
    Case {
        name: "ES index without server",
        args: &["--es-index", "ripsaw-kube-burner-vm-bgp"],
        expect: &["--es-index", "must be given together"],
    },
    Case {
        name: "uppercase ES index",
        args: &[
            "--es-server",
            "https://es.example:9200",
            "--es-index",
            "Ripsaw",
        ],
        expect: &["--es-index", "\"Ripsaw\"", "lowercase"],
    },
    Case {
        name: "ASN above 32 bits",
        args: &["--peer-asn", "4294967296"],
        expect: &["--peer-asn", "4294967296", "ASN out of range"],
    },
    Case {
        name: "ASN zero",
        args: &["--cluster-asn", "0"],
        expect: &["--cluster-asn", "ASN out of range"],
    },
    Case {
        name: "peer IP inside the VM subnet",
        args: &["--bgp-peer-ip", "198.19.1.7"],
        expect: &[
            "--bgp-peer-ip",
            "198.19.1.7",
            "inside the VM network 198.19.1.0/24",
        ],
    },
    Case {
        name: "uuid that is no label value",
        args: &["--uuid", "bad uuid!"],
        expect: &["--uuid", "bad uuid!", "label value"],
    },
    Case {
        name: "too many VMs for a /24",
        args: &["--vm-count", "300"],
        expect: &["--vm-count", "300 VMs", "do not fit a /24"],
    },
    Case {
        name: "supernet too small for the iterations",
        args: &["--supernet", "198.19.0.0/23", "--iterations", "3"],
        expect: &["--supernet", "holds 2 /24 subnets but 3 iterations"],
    },
    Case {
        name: "churn on a per-iteration layout",
        args: &["--profile", "vm-bgp-churn", "--network", "per-iteration"],
        expect: &[
            "--network",
            "churn shape reuses one network",
            "--network shared",
        ],
    },
    Case {
        name: "static range on a per-iteration layout",
        args: &["--vm-ip-range", "198.19.0.10-198.19.0.20"],
        expect: &["--vm-ip-range", "applies to --network shared"],
    },
    Case {
        name: "node range overlapping the VM network",
        args: &["--node-cidr", "198.19.0.0/24"],
        expect: &["--node-cidr", "overlaps the VM network 198.19.0.0/24"],
    },
    Case {
        name: "bad BMP target",
        args: &["--bmp-target", "127.0.0.1"],
        expect: &["--bmp-target", "HOST:PORT"],
    },
    Case {
        name: "every problem at once",
        args: &["--iterations", "0", "--qps", "0", "--peer-asn", "0"],
        expect: &["--iterations", "--qps", "--peer-asn"],
    },
];

/// A kubeconfig pointing at a local listener that must never see a connection.
fn tripwire() -> (TcpListener, tempfile::NamedTempFile) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    (listener, common::kubeconfig_for(port))
}

#[test]
fn invalid_input_exits_2_names_field_and_value_and_contacts_nothing() {
    assert!(CASES.len() >= 20);
    let (listener, kubeconfig) = tripwire();
    let mut failures = Vec::new();
    for case in CASES {
        let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
            .args(case.args)
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, stderr: {stderr}",
                case.name,
                output.status.code()
            ));
            continue;
        }
        for needle in case.expect {
            if !stderr.contains(needle) {
                failures.push(format!("{}: stderr lacks {needle:?}: {stderr}", case.name));
            }
        }
        assert!(output.stdout.is_empty(), "{}: printed to stdout", case.name);
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("invalid input contacted the API server: {other:?}"),
    }
}

#[test]
fn unknown_profile_key_is_refused_with_its_name() {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("tempfile");
    write!(file, "name: custom\nshape: scale\nvmCnt: 3\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["render", "--profile"])
        .arg(file.path())
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("vmCnt") && stderr.contains(&file.path().display().to_string()),
        "{stderr}"
    );
}

#[test]
fn unknown_network_layout_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["--network", "bogus"])
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bogus") && stderr.contains("--network"),
        "{stderr}"
    );
}

#[test]
fn unreachable_cluster_is_environment_unavailable() {
    // Bind then drop: the port is closed, so the connection is refused at once.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let kubeconfig = common::kubeconfig_for(port);
    for command in [
        &["check"][..],
        &["--iterations", "1", "--vm-count", "1"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
            .args(command)
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{command:?}: {stderr}");
        assert!(
            stderr.contains("unreachable") && stderr.contains(&port.to_string()),
            "{stderr}"
        );
    }
}

#[test]
fn missing_kubeconfig_is_environment_unavailable() {
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["check", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
}

/// Every object a plan would create is checked against the real schemas and CEL rules before anything
/// is contacted: the churn profile over a /16 reserves more subnets than the real CUDN CRD allows.
#[test]
fn an_object_the_real_schema_refuses_is_invalid_input_for_render_run_and_check() {
    let (listener, kubeconfig) = tripwire();
    let plan = [
        "--profile",
        "vm-bgp-churn",
        "--subnet",
        "10.100.0.0/16",
        "--vm-ip-range",
        "10.100.0.3-10.100.255.252",
    ];
    for command in [&["render"][..], &["run"][..], &["check"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
            .args(command)
            .args(plan)
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        for needle in [
            "ClusterUserDefinedNetwork",
            "spec.network.layer2.reservedSubnets",
            "25",
            "would be refused by the API server",
        ] {
            assert!(
                stderr.contains(needle),
                "{command:?}: lacks {needle:?}: {stderr}"
            );
        }
        assert!(
            output.stdout.is_empty(),
            "{command:?} printed: {:?}",
            output.stdout
        );
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("an invalid plan contacted the API server: {other:?}"),
    }
}

/// Log lines carry no ANSI colour codes when stderr is not a terminal (CI logs, files).
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let kubeconfig = common::kubeconfig_for(port);
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["check", "--kubeconfig"])
        .arg(kubeconfig.path())
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(" DEBUG "),
        "no log lines to check: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs: {stderr:?}"
    );
}

/// `lab up --host-routes` without a controller binary stops before anything exists: exit 4, the
/// path it looked at, and how to get one. `--controller-bin` alone is a usage error.
#[test]
fn lab_up_host_routes_without_a_controller_binary_is_environment_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("lab");
    let absent = dir.path().join("no-such-controller");
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["lab", "up", "--host-routes", "--state-dir"])
        .arg(&state)
        .arg("--controller-bin")
        .arg(&absent)
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("host-route controller") && stderr.contains(&absent.display().to_string()),
        "{stderr}"
    );
    assert!(!state.exists(), "a lab was started");

    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["lab", "up", "--state-dir"])
        .arg(&state)
        .arg("--controller-bin")
        .arg(&absent)
        .output()
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--host-routes"), "{stderr}");
}
