//! Connections per second and latency through warden's interfaces.
//!
//! Runs the real `warden` with the example services: the echo service on
//! the `systemd` interface (preforked, the processes accept themselves),
//! the login service on the native `warden` interface (preforked alike,
//! but warden accepts, admits and hands each connection over its control
//! channel, and hears it closed), and the whoami service on the `inetd`
//! interface (warden accepts and starts a process per connection). Echo
//! and login both serve a client on a thread of their own and greet it
//! with one line. Each connection is opened, its greeting read and closed,
//! one after another; the latency is from `connect` to the greeting.
//!
//!     cargo bench -p warden-tests --bench connections

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};

use warden_tests::{LineClient, Running, echo, free_port, login, whoami};

fn measure(port: u16, connections: usize) -> (f64, Duration, Duration) {
    let mut latencies = Vec::with_capacity(connections);
    let start = Instant::now();
    for _ in 0..connections {
        let opened = Instant::now();
        let mut client = LineClient::connect(port).expect("connect");
        client.line().expect("read").expect("a greeting");
        latencies.push(opened.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let per_second = connections as f64 / elapsed.as_secs_f64();
    (per_second, at(0.50), at(0.99))
}

fn main() {
    let (systemd, native, inetd) = (free_port(), free_port(), free_port());
    let users = std::env::temp_dir().join(format!("warden-bench-users-{}", std::process::id()));
    std::fs::write(&users, "alice:secret\n").expect("write the users");
    let warden = Running::start_quiet(&format!(
        r#"
[service.echo]
executable = "{echo}"
client_limit = 100
process_limit = 4
process_min_avail = 2

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {systemd}

[service.login]
executable = "{login} {users}"
interface = "warden"
client_limit = 100
process_limit = 4
process_min_avail = 2

[[service.login.inet_listener]]
name = "login"
address = "127.0.0.1"
port = {native}

[service.whoami]
executable = "{whoami}"
interface = "inetd"
process_limit = 100

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {inetd}
"#,
        echo = echo().display(),
        login = login().display(),
        users = users.display(),
        whoami = whoami().display(),
    ));
    warden.wait_for(
        "the preforked echo processes",
        Duration::from_secs(20),
        || warden.status("echo").available == 2 && warden.status("login").available == 2,
    );
    // Warm up every path.
    measure(systemd, 50);
    measure(native, 50);
    measure(inetd, 50);
    println!("sequential connections: connect, read the greeting, close");
    println!(
        "{:<32} {:>8} {:>10} {:>10} {:>10}",
        "interface", "count", "conn/s", "p50", "p99"
    );
    for (name, port, count) in [
        ("systemd (preforked echo)", systemd, 5000),
        ("warden (preforked, handed over)", native, 5000),
        ("inetd (process per connection)", inetd, 2000),
    ] {
        let (per_second, p50, p99) = measure(port, count);
        println!(
            "{name:<32} {count:>8} {per_second:>10.0} {:>9.3}ms {:>9.3}ms",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    let _ = std::fs::remove_file(&users);
}
