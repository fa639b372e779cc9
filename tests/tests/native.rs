//! warden's native interface end to end, with the example login service:
//! the host accepts, hands connections over, reads PROXY headers, admits
//! by source, and evicts in a full login service.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::Path;
use std::time::Duration;

use warden::control::{Request, Response};
use warden_tests::{LineClient, Running, echo_service, fixture, free_port, login};

const WAIT: Duration = Duration::from_secs(20);

/// A login service of one process with room for `clients` clients, on
/// `port` (plain) and `proxy` (`haproxy = yes`), with `settings` added.
fn login_service(dir: &Path, port: u16, proxy: u16, clients: u32, settings: &str) -> String {
    let users = dir.join("users");
    std::fs::write(&users, "alice:secret\nbob:hunter2\n").expect("write the users");
    format!(
        r#"
haproxy_trusted_networks = "127.0.0.0/8"
haproxy_timeout = "1s"

[service.login]
executable = "{login} {users}"
interface = "warden"
type = "login"
client_limit = {clients}
process_limit = 1
{settings}

[[service.login.inet_listener]]
name = "plain"
address = "127.0.0.1"
port = {port}

[[service.login.inet_listener]]
name = "proxied"
address = "127.0.0.1"
port = {proxy}
haproxy = true
"#,
        login = login().display(),
        users = users.display(),
    )
}

/// Connects and reads the greeting: the address the service was given.
fn greeted(port: u16) -> (LineClient, String) {
    let mut client = LineClient::connect(port).expect("connect");
    let greeting = client.line().expect("read").expect("a greeting");
    let peer = greeting
        .strip_prefix("* OK warden-login ready; you are ")
        .unwrap_or_else(|| panic!("not a greeting: {greeting:?}"))
        .to_owned();
    (client, peer)
}

/// Connects to `port` and sends `header` first, as a proxy would.
fn proxied(port: u16, header: &[u8]) -> LineClient {
    let mut client = LineClient::connect(port).expect("connect");
    client.send_bytes(header).expect("send the PROXY header");
    client
}

fn log_in(client: &mut LineClient, name: &str, password: &str) {
    client
        .send(&format!("LOGIN {name} {password}"))
        .expect("send");
    assert_eq!(
        client.line().expect("read").as_deref(),
        Some("OK logged in")
    );
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

// seed: type.login
// seed: svc.login
#[test]
fn a_full_login_service_evicts_its_oldest_connection_not_logged_in() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(dir.path(), port, proxy, 2, ""));
    let (mut oldest, _) = greeted(port);
    std::thread::sleep(Duration::from_millis(50));
    let (mut second, _) = greeted(port);
    let (mut newest, _) = greeted(port);
    assert!(oldest.closed(), "the oldest connection was not evicted");
    // The others are served.
    second.send("WHOAMI").expect("send");
    assert!(
        second
            .line()
            .expect("read")
            .is_some_and(|l| l.starts_with("NO log in first"))
    );
    log_in(&mut newest, "alice", "secret");
    let log = warden.log();
    assert!(log.contains("reason=\"evicted\""), "{log}");
}

// seed: svc.login
#[test]
fn a_connection_that_logged_in_is_never_evicted() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let _warden = Running::start(&login_service(dir.path(), port, proxy, 2, ""));
    let (mut logged_in, peer) = greeted(port);
    log_in(&mut logged_in, "alice", "secret");
    let (mut waiting, _) = greeted(port);
    let (mut newest, _) = greeted(port);
    assert!(waiting.closed(), "the connection not logged in was kept");
    logged_in.send("WHOAMI").expect("send");
    assert_eq!(
        logged_in.line().expect("read").as_deref(),
        Some(format!("alice from {peer}").as_str())
    );
    // Both now logged in: the service is full and evicts no one.
    log_in(&mut newest, "bob", "hunter2");
    let mut refused = LineClient::connect(port).expect("connect");
    refused.send("WHOAMI").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    logged_in.send("WHOAMI").expect("send");
    assert!(
        logged_in
            .line()
            .expect("read")
            .is_some_and(|l| l.starts_with("alice"))
    );
    newest.send("WHOAMI").expect("send");
    assert!(
        newest
            .line()
            .expect("read")
            .is_some_and(|l| l.starts_with("bob"))
    );
}

#[test]
fn an_eviction_plugin_can_pick_the_newest_instead() {
    let dir = temp();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::write(plugins.join("evict-newest.wasm"), fixture("evict-newest")).expect("write");
    let (port, proxy) = (free_port(), free_port());
    let body = format!(
        "plugins_dir = {:?}\n{}",
        plugins.display().to_string(),
        login_service(dir.path(), port, proxy, 2, "policies = [\"evict-newest\"]")
    );
    let _warden = Running::start(&body);
    let (mut oldest, _) = greeted(port);
    std::thread::sleep(Duration::from_millis(50));
    let (mut newer, _) = greeted(port);
    let (mut arriving, _) = greeted(port);
    assert!(
        newer.closed(),
        "the newest waiting connection was not the one evicted"
    );
    log_in(&mut oldest, "alice", "secret");
    log_in(&mut arriving, "bob", "hunter2");
}

// seed: listen.inet.haproxy
#[test]
fn proxy_headers_give_the_service_the_clients_address() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let _warden = Running::start(&login_service(dir.path(), port, proxy, 10, ""));
    let mut v1 = proxied(proxy, b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143\r\n");
    assert_eq!(
        v1.line().expect("read").as_deref(),
        Some("* OK warden-login ready; you are 203.0.113.9:50123")
    );
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[198, 51, 100, 7, 192, 0, 2, 1]);
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&143u16.to_be_bytes());
    let mut v2 = proxied(proxy, &header);
    assert_eq!(
        v2.line().expect("read").as_deref(),
        Some("* OK warden-login ready; you are 198.51.100.7:40000")
    );
}

// seed: listen.inet.haproxy
#[test]
fn a_missing_malformed_or_untrusted_proxy_header_never_reaches_the_service() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(dir.path(), port, proxy, 10, ""));
    let mut missing = LineClient::connect(proxy).expect("connect");
    missing.send("LOGIN alice secret").expect("send");
    assert!(missing.closed(), "a connection without a header was served");
    let mut malformed = proxied(proxy, b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n");
    assert!(malformed.closed(), "a malformed header was accepted");
    let mut silent = LineClient::connect(proxy).expect("connect");
    assert!(
        silent.closed(),
        "a connection that sent nothing was kept past haproxy_timeout"
    );
    warden.wait_for("the refusals in the log", WAIT, || {
        let log = warden.log();
        log.contains("reason=\"proxy-malformed\"") && log.contains("reason=\"proxy-timeout\"")
    });
    match warden.request(&Request::Who { service: None }) {
        Response::Connections { connections } => assert!(connections.is_empty()),
        other => panic!("who answered {other:?}"),
    }

    // From outside haproxy_trusted_networks, even a good header is refused.
    let untrusted_dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let body = login_service(untrusted_dir.path(), port, proxy, 2, "")
        .replace("\"127.0.0.0/8\"", "\"10.0.0.0/8\"");
    let untrusted = Running::start(&body);
    let mut client = proxied(proxy, b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143\r\n");
    assert!(client.closed(), "an untrusted source was accepted");
    untrusted.wait_for("the refusal in the log", WAIT, || {
        untrusted.log().contains("reason=\"proxy-untrusted\"")
    });
}

#[test]
fn per_source_limits_refuse_one_address_and_let_another_through() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(
        dir.path(),
        port,
        proxy,
        10,
        "per_source_limit = 1",
    ));
    let from = |address: &str| {
        proxied(
            proxy,
            format!("PROXY TCP4 {address} 192.0.2.1 50000 143\r\n").as_bytes(),
        )
    };
    let mut first = from("203.0.113.9");
    assert!(
        first
            .line()
            .expect("read")
            .is_some_and(|l| l.contains("203.0.113.9"))
    );
    let mut second = from("203.0.113.9");
    assert!(
        second.closed(),
        "a second connection from one address got through"
    );
    let mut other = from("198.51.100.1");
    assert!(
        other
            .line()
            .expect("read")
            .is_some_and(|l| l.contains("198.51.100.1"))
    );
    warden.wait_for("the refusal in the log", WAIT, || {
        warden.log().contains("reason=\"per-source-limit\"")
    });
}

#[test]
fn who_lists_connections_and_kick_closes_one_by_id_or_by_address() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(dir.path(), port, proxy, 10, ""));
    let (mut alice, _) = greeted(port);
    log_in(&mut alice, "alice", "secret");
    let mut from_proxy = proxied(proxy, b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143\r\n");
    assert!(from_proxy.line().expect("read").is_some());
    let connections = match warden.request(&Request::Who {
        service: Some("login".into()),
    }) {
        Response::Connections { connections } => connections,
        other => panic!("who answered {other:?}"),
    };
    assert_eq!(connections.len(), 2, "{connections:?}");
    let logged_in = connections
        .iter()
        .find(|c| c.state == "authenticated")
        .expect("alice's connection");
    assert_eq!(logged_in.listener, "plain");
    assert!(
        connections.iter().any(|c| c.peer == "203.0.113.9:50123"
            && c.state == "waiting"
            && c.listener == "proxied")
    );

    let output = warden.cli(&["kick", "--connection", "203.0.113.9"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(from_proxy.closed());
    match warden.request(&Request::KickConnection {
        target: logged_in.id.to_string(),
    }) {
        Response::Done { .. } => {}
        other => panic!("kick answered {other:?}"),
    }
    assert!(alice.closed());
    let who = warden.cli(&["who"]);
    assert_eq!(
        String::from_utf8_lossy(&who.stdout).lines().count(),
        1,
        "only the heading"
    );
}

#[test]
fn a_process_that_breaks_the_protocol_loses_its_channel_not_the_master() {
    let (port, other) = (free_port(), free_port());
    let service = |name: &str, script: &str, port: u16| {
        format!(
            r#"
[service.{name}]
executable = "/bin/sh -c '{script}; sleep 30'"
interface = "warden"
process_min_avail = 1

[[service.{name}.inet_listener]]
name = "{name}"
address = "127.0.0.1"
port = {port}
"#
        )
    };
    let warden = Running::start(&format!(
        "{}{}",
        service("garbage", "echo not-a-message >&3", port),
        service(
            "oversized",
            "head -c 6000 /dev/zero | dd bs=6000 count=1 iflag=fullblock >&3 2>/dev/null",
            other
        )
    ));
    warden.wait_for("both channels closed with their reasons", WAIT, || {
        let log = warden.log();
        log.contains("not a message of protocol version 1")
            && log.contains("longer than 4096 bytes")
    });
    assert!(
        warden
            .log()
            .contains("closing the control channel of a process")
    );
    match warden.request(&Request::Status) {
        Response::Status { services } => assert_eq!(services.len(), 2),
        other => panic!("status answered {other:?}"),
    }
}

// seed: svc.login
#[test]
fn the_login_plugin_counts_waiting_evicted_and_logged_in_connections() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    // The service asks the built-in login plugin by name; its chroot, user
    // and service_count are the file's here, as the example needs.
    let body = login_service(
        dir.path(),
        port,
        proxy,
        2,
        "policies = [\"login\"]\nchroot = \"\"\nuser = \"\"\nservice_count = 0",
    );
    let warden = Running::start(&body);
    let (_evicted, _) = greeted(port);
    std::thread::sleep(Duration::from_millis(50));
    let (mut alice, _) = greeted(port);
    log_in(&mut alice, "alice", "secret");
    let (_waiting, _) = greeted(port);
    let stats = || {
        let output = warden.cli(&["stats"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    warden.wait_for("the login plugin's figures", WAIT, || {
        let text = stats();
        [
            "warden_plugin_login_connections_evicted_total{service=\"login\"} 1",
            "warden_plugin_login_connections_logged_in_total{service=\"login\"} 1",
            "warden_plugin_login_connections_waiting{service=\"login\"} 1",
            "warden_evicted_connections_total{service=\"login\"} 1",
        ]
        .iter()
        .all(|line| text.contains(line))
    });
}

// seed: listen.inet.haproxy
#[test]
fn an_inetd_service_sees_the_proxied_address_in_its_ucspi_variables() {
    let proxy = free_port();
    let _warden = Running::start(&format!(
        r#"
haproxy_trusted_networks = "127.0.0.1"

[service.whoami]
executable = "{whoami}"
interface = "inetd"

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {proxy}
haproxy = true
"#,
        whoami = warden_tests::whoami().display()
    ));
    let mut client = proxied(proxy, b"PROXY TCP6 2001:db8::7 2001:db8::1 50123 110\r\n");
    let greeting = client.line().expect("read").expect("a greeting");
    assert!(
        greeting.starts_with("you are 2001:db8::7:50123, talking to 2001:db8::1:110"),
        "{greeting}"
    );
}

#[test]
fn idle_processes_are_asked_over_the_channel_and_service_count_retires_them() {
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(
        dir.path(),
        port,
        proxy,
        2,
        "idle_kill = \"1s\"\nservice_count = 2",
    ));
    // Two connections use up the first process's service_count.
    let (mut first, _) = greeted(port);
    let (mut second, _) = greeted(port);
    let pids = warden.pids("login");
    assert_eq!(pids.len(), 1);
    let (mut third, _) = greeted(port);
    let now = warden.pids("login");
    assert_eq!(now.len(), 2, "a retired process takes no third connection");
    for client in [&mut first, &mut second, &mut third] {
        client.send("QUIT").expect("send");
        assert_eq!(client.line().expect("read").as_deref(), Some("BYE"));
    }
    // The retired one exits with its last connection; the other, idle,
    // is asked to exit over its channel and does.
    warden.wait_for("every process gone", WAIT, || {
        warden.pids("login").is_empty()
    });
    let log = warden.log();
    assert!(log.contains("asked an idle process to exit"), "{log}");
}

#[test]
fn a_connection_the_admission_policy_delays_is_served_after_the_delay() {
    let dir = temp();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::write(
        plugins.join("delay-newcomers.wasm"),
        fixture("delay-newcomers"),
    )
    .expect("write");
    let (port, proxy) = (free_port(), free_port());
    let body = format!(
        "plugins_dir = {:?}\n{}",
        plugins.display().to_string(),
        login_service(
            dir.path(),
            port,
            proxy,
            2,
            "policies = [\"delay-newcomers\"]\nprocess_min_avail = 1"
        )
    );
    let warden = Running::start(&body);
    warden.wait_for("a ready process", WAIT, || {
        warden.status("login").available == 1
    });
    let connected = std::time::Instant::now();
    let (mut client, _) = greeted(port);
    assert!(
        connected.elapsed() >= Duration::from_millis(300),
        "served after {:?}, before the delay",
        connected.elapsed()
    );
    log_in(&mut client, "alice", "secret");
}

#[test]
fn many_bad_proxy_headers_are_logged_as_one_summary() {
    const BAD: usize = 200;
    let dir = temp();
    let (port, proxy) = (free_port(), free_port());
    let warden = Running::start(&login_service(dir.path(), port, proxy, 10, ""));
    for _ in 0..BAD {
        let mut client = proxied(proxy, b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n");
        assert!(client.closed(), "a malformed header was accepted");
    }
    let summary = format!("{} more connections refused (proxy-malformed)", BAD - 1);
    warden.wait_for("the summary", WAIT, || warden.log().contains(&summary));
    let log = warden.log();
    let refused = log
        .lines()
        .filter(|line| line.contains("connection refused:"))
        .count();
    assert_eq!(refused, 1, "{log}");
    assert_eq!(log.matches("more connections refused").count(), 1, "{log}");
    // The metric still counts each.
    match warden.request(&Request::Stats) {
        Response::Stats { text } => assert!(
            text.contains(&format!(
                "warden_rejected_connections_total{{service=\"login\",reason=\"proxy-malformed\"}} {BAD}"
            )),
            "{text}"
        ),
        other => panic!("stats answered {other:?}"),
    }
}

#[test]
fn the_echo_example_serves_on_the_native_interface_too() {
    // The program of the systemd interface's tests, handed its clients.
    let port = free_port();
    let warden = Running::start(&echo_service(
        "echo",
        port,
        "interface = \"warden\"\nservice_count = 2",
    ));
    let mut client = LineClient::connect(port).expect("connect");
    let pid = client.echo_pid();
    assert_eq!(warden.pids("echo"), [pid]);
    client.send("ping").expect("send");
    assert_eq!(client.line().expect("read").as_deref(), Some("ping"));
    client.send("quit").expect("send");
    assert!(client.closed(), "quit ends the connection");
    warden.wait_for("the connection reported closed", WAIT, || {
        matches!(warden.request(&Request::Who { service: None }),
            Response::Connections { connections } if connections.is_empty())
    });
    // The second connection uses up its service_count: it exits with it.
    let mut second = LineClient::connect(port).expect("connect");
    assert_eq!(second.echo_pid(), pid);
    drop(second);
    warden.wait_for("the retired process gone", WAIT, || {
        !warden_tests::running(pid)
    });
}
