//! The plugin sandbox, proven where users meet it: each misbehaving plugin
//! is dropped into the `plugins_dir` of a running warden while clients
//! keep connecting, one after another, to an inetd service (whose every
//! connection asks the admission hook) and a socket-activated one (whose
//! idle processes the idle hook is asked about each second). No client is
//! refused, the master keeps running, and every fault is logged with the
//! plugin, the hook and the service, counted, and answered by the next
//! decision in the chain.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use warden::control::{PluginStatus, Request, Response};
use warden_tests::{LineClient, Running, echo, fixture, free_port, whoami_service};

const WAIT: Duration = Duration::from_secs(60);

/// Puts `bytes` at `path` at once, as an operator's `mv` would.
fn install(path: &Path, bytes: &[u8]) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, bytes).expect("write the plugin");
    std::fs::rename(&staging, path).expect("move the plugin into place");
}

/// Clients connecting without pause to both services until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    refused: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(echo_port: u16, whoami_port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (port, greeting) in [(echo_port, "hello from "), (whoami_port, "you are ")] {
            let (stop, served, refused) = (stop.clone(), served.clone(), refused.clone());
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = LineClient::connect(port).and_then(|mut client| client.line());
                    match outcome {
                        Ok(Some(line)) if line.starts_with(greeting) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => refused
                            .lock()
                            .expect("the list")
                            .push(format!("port {port}: {other:?}")),
                    }
                }
            }));
        }
        Load {
            stop,
            served,
            refused,
            threads,
        }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns every connection that was not served.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a client thread");
        }
        self.refused.lock().expect("the list").clone()
    }
}

fn plugin(warden: &Running, name: &str) -> Option<PluginStatus> {
    match warden.request(&Request::Plugins) {
        Response::Plugins { plugins } => plugins.into_iter().find(|p| p.name == name),
        other => panic!("plugins answered {other:?}"),
    }
}

/// What a fixture must show in the running master.
struct Case {
    fixture: &'static str,
    /// Lines the log must come to hold, in any order.
    logged: &'static [&'static str],
    /// Whether the plugin loads (a contract mismatch does not).
    loads: bool,
    /// Whether its calls fail (and so are counted and quarantine it).
    fails: bool,
}

const CASES: &[Case] = &[
    Case {
        fixture: "print",
        logged: &[
            "plugin=\"print\" stream=\"stdout\" hook=\"admission\" service=\"whoami\"",
            "admit asked for whoami connection",
            "plugin=\"print\" stream=\"stderr\" hook=\"idle\" service=\"echo\"",
        ],
        loads: true,
        fails: false,
    },
    Case {
        fixture: "trap",
        logged: &[
            "the trap fixture traps on purpose",
            "plugin=\"trap\" hook=\"admission\" service=\"whoami\"",
            "trapped",
            "quarantined until the next reload",
        ],
        loads: true,
        fails: true,
    },
    Case {
        fixture: "memory-hog",
        logged: &[
            "plugin=\"memory-hog\" hook=\"admission\" service=\"whoami\"",
            "the plugin exceeded its memory cap; the next decision in the chain is used",
        ],
        loads: true,
        fails: true,
    },
    Case {
        fixture: "endless-loop",
        logged: &[
            "plugin=\"endless-loop\" hook=\"admission\" service=\"whoami\"",
            "the plugin ran past its deadline; the next decision in the chain is used",
        ],
        loads: true,
        fails: true,
    },
    Case {
        fixture: "sleep",
        logged: &[
            "plugin=\"sleep\" hook=\"admission\" service=\"whoami\"",
            "waited (for a timer or a stream) instead of answering",
        ],
        loads: true,
        fails: true,
    },
    Case {
        fixture: "huge-log",
        logged: &["plugin=\"huge-log\"", "bytes cut)"],
        loads: true,
        fails: false,
    },
    Case {
        fixture: "open-file",
        logged: &[
            "read 9 bytes of /grant/allowed.txt",
            "cannot read /etc/passwd",
            "cannot write /grant/written.txt",
        ],
        loads: true,
        fails: false,
    },
    Case {
        fixture: "wrong-record",
        logged: &[
            "`idle.retire`: parameter 2 (`processes`): record `process` has 8 fields, warden's contract has 7; the plugin is not used",
        ],
        loads: false,
        fails: false,
    },
    Case {
        fixture: "wrong-version",
        logged: &["built against warden:policy@0.2.0; this warden speaks 0.1.0"],
        loads: false,
        fails: false,
    },
];

#[test]
fn misbehaving_plugins_dropped_into_a_running_master_under_load_refuse_no_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins_dir = dir.path().join("plugins");
    let grant = dir.path().join("grant");
    std::fs::create_dir_all(&plugins_dir).expect("mkdir plugins");
    std::fs::create_dir_all(&grant).expect("mkdir grant");
    std::fs::write(grant.join("allowed.txt"), "blocklist").expect("write the grant");
    let (echo_port, whoami_port) = (free_port(), free_port());
    let warden = Running::start(&format!(
        r#"
plugins_dir = {plugins:?}

[plugin.open-file]
directory = {grant:?}

[plugin.huge-log]
deadline = "2s"

[service.echo]
executable = {echo:?}
client_limit = 4
process_min_avail = 2
idle_kill = "1s"

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {echo_port}
{whoami}"#,
        plugins = plugins_dir.display().to_string(),
        grant = grant.display().to_string(),
        echo = echo().display().to_string(),
        whoami = whoami_service(whoami_port, ""),
    ));
    let load = Load::start(echo_port, whoami_port);
    warden.wait_for("clients to be served", WAIT, || load.served() > 20);

    for case in CASES {
        let file = plugins_dir.join(format!("{}.wasm", case.fixture));
        let served_before = load.served();
        install(&file, fixture(case.fixture));
        warden.wait_for(
            &format!("the {} fixture's faults in the log", case.fixture),
            WAIT,
            || {
                let log = warden.log();
                case.logged.iter().all(|line| log.contains(line))
            },
        );
        if case.loads {
            let status = plugin(&warden, case.fixture).unwrap_or_else(|| {
                panic!("{} is not listed; the log:\n{}", case.fixture, warden.log())
            });
            if case.fails {
                assert!(status.failures > 0, "{status:?}");
                warden.wait_for(&format!("{} to be quarantined", case.fixture), WAIT, || {
                    plugin(&warden, case.fixture).is_some_and(|p| p.quarantined)
                });
                // And shown where an alert sees it.
                let quarantined =
                    format!("warden_policy_quarantined{{plugin=\"{}\"}} 1", case.fixture);
                warden.wait_for(&quarantined, WAIT, || {
                    matches!(
                        warden.request(&Request::Stats),
                        Response::Stats { text } if text.contains(&quarantined)
                    )
                });
            } else {
                assert_eq!(status.failures, 0, "{status:?}");
            }
        } else {
            assert!(plugin(&warden, case.fixture).is_none());
        }
        // Clients went on being served meanwhile.
        warden.wait_for("more clients to be served", WAIT, || {
            load.served() > served_before + 10
        });
        std::fs::remove_file(&file).expect("remove the plugin");
        warden.wait_for(&format!("{} to be unloaded", case.fixture), WAIT, || {
            plugin(&warden, case.fixture).is_none()
        });
    }

    let served = load.served();
    let refused = load.finish();
    assert!(
        refused.is_empty(),
        "{} of {served} connections were not served: {refused:?}\nthe log:\n{}",
        refused.len(),
        warden.log()
    );
    // The master is the one that started, still answering.
    assert!(matches!(
        warden.request(&Request::Status),
        Response::Status { .. }
    ));
}

#[test]
fn a_reload_lifts_a_quarantine_and_the_plugin_is_asked_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).expect("mkdir plugins");
    install(&plugins_dir.join("trap.wasm"), fixture("trap"));
    let port = free_port();
    let warden = Running::start(&format!(
        r#"
plugins_dir = {plugins:?}
{whoami}"#,
        plugins = plugins_dir.display().to_string(),
        whoami = whoami_service(port, ""),
    ));
    // Each connection asks the trap fixture's admission hook, which traps;
    // the built-in decision serves the client all the same.
    let serve = || {
        let greeting = LineClient::connect(port)
            .and_then(|mut client| client.line())
            .expect("a connection");
        assert!(
            greeting.is_some_and(|line| line.starts_with("you are ")),
            "a client went unserved; the log:\n{}",
            warden.log()
        );
    };
    let quarantines = |log: &str| log.matches("quarantined until the next reload").count();
    warden.wait_for("the trap fixture to be quarantined", WAIT, || {
        serve();
        plugin(&warden, "trap").is_some_and(|p| p.quarantined)
    });
    let calls = plugin(&warden, "trap").map(|p| p.calls);
    serve();
    assert_eq!(
        plugin(&warden, "trap").map(|p| p.calls),
        calls,
        "a quarantined plugin is not asked"
    );
    assert_eq!(quarantines(&warden.log()), 1);

    match warden.request(&Request::Reload) {
        Response::Done { .. } => {}
        other => panic!("reload answered {other:?}"),
    }
    let lifted = plugin(&warden, "trap").expect("still loaded");
    assert!(!lifted.quarantined, "{lifted:?}");
    assert_eq!(lifted.failures, 0, "{lifted:?}");
    // Asked again, it fails again, and is quarantined anew.
    warden.wait_for("the trap fixture to be quarantined again", WAIT, || {
        serve();
        quarantines(&warden.log()) == 2
    });
}
