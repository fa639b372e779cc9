//! What an admission policy costs in each language, where users pay it:
//! in a running master. For each of `examples/plugins/{rust,c,python,
//! javascript}/admission` whose toolchain is installed, the example is
//! built, dropped into a master's `plugins_dir` with an empty plugin cache,
//! and asked about every connection of an inetd service while a client
//! connects one connection after another, each from another loopback
//! address so the example's burst rule never holds one back. Printed per
//! language: the
//! component's size, the time from the drop-in to the plugin deciding
//! (compiled by the helper, then loaded), the master's resident memory
//! with it loaded, and the mean and 99th percentile time of its calls as
//! the master measured them (`warden_policy_call_*_seconds`).
//!
//!     cargo bench -p warden-tests --bench languages

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use warden::control::{Request, Response};
use warden_tests::{ExamplePlugin, LineClient, Running, free_port, resident_mb, whoami};

/// Connections made once the plugin decides.
const CONNECTIONS: usize = 1000;

/// A connection to `port` on 127.0.0.1 from the `n`th of 250 loopback
/// addresses, so that no source opens more than the example's burst
/// allowance (5 a second) and every connection is decided once.
fn connect_from(n: usize, port: u16) -> LineClient {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let host = u8::try_from(n % 250 + 2).expect("a host number");
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("a socket");
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 1, host, 0)).expect("bind a loopback source");
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).expect("connect");
    LineClient::from_stream(std::net::TcpStream::from(fd))
}

/// The value of the sample `name{plugin="PLUGIN"}` on the metrics page.
fn sample(metrics: &str, name: &str, plugin: &str) -> f64 {
    let prefix = format!("{name}{{plugin=\"{plugin}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
}

/// One language's figures.
struct Row {
    language: &'static str,
    size_kb: u64,
    ready: Duration,
    rss_mb: f64,
    calls: f64,
    mean_us: f64,
    p99_us: f64,
}

fn measure(language: &'static str, out: &Path) -> Option<Row> {
    let example = ExamplePlugin {
        language,
        policy: "admission",
    };
    let wasm = example.build(out)?;
    let name = example.name();
    let plugins = out.join("plugins");
    let grant = out.join("grant");
    std::fs::create_dir_all(&plugins).expect("mkdir plugins");
    std::fs::create_dir_all(&grant).expect("mkdir grant");
    // A deny list that names no client: every connection is asked about
    // and accepted, and the list is read each time.
    std::fs::write(grant.join("deny"), "192.0.2.66\n").expect("write the deny list");
    let port = free_port();
    let warden = Running::start_quiet(&format!(
        r#"plugins_dir = "{plugins}"
plugin_cache = "{cache}"

[plugin.{name}]
directory = "{grant}"
deadline = "1s"

[service.whoami-login]
executable = "{whoami}"
interface = "inetd"

[[service.whoami-login.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {port}
"#,
        plugins = plugins.display(),
        cache = out.join("cache").display(),
        grant = grant.display(),
        whoami = whoami().display(),
    ));
    let dropped = Instant::now();
    std::fs::copy(&wasm, plugins.join(format!("{name}.wasm"))).expect("drop the plugin in");
    let loaded = format!("plugin loaded plugin=\"{name}\"");
    warden.wait_for("the plugin loaded", Duration::from_secs(600), || {
        warden.log().contains(&loaded)
    });
    let ready = dropped.elapsed();
    for n in 0..CONNECTIONS {
        let mut client = connect_from(n, port);
        client.line().expect("read").expect("served");
    }
    // The figures are published once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let Response::Stats { text } = warden.request(&Request::Stats) else {
        panic!("no metrics");
    };
    Some(Row {
        language,
        size_kb: std::fs::metadata(&wasm).expect("the component").len() / 1024,
        ready,
        rss_mb: resident_mb(warden.pid()),
        calls: sample(&text, "warden_policy_calls_total", &name),
        mean_us: sample(&text, "warden_policy_call_mean_seconds", &name) * 1e6,
        p99_us: sample(&text, "warden_policy_call_p99_seconds", &name) * 1e6,
    })
}

fn main() {
    println!(
        "admission examples in a running master, {CONNECTIONS} connections each (the call times are of the last 1024 calls)\n"
    );
    println!("| language | component | drop-in to deciding | master RSS | calls | mean | p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for language in ["rust", "c", "python", "javascript"] {
        let out = tempfile::tempdir().expect("tempdir");
        let Some(row) = measure(language, out.path()) else {
            println!("| {language} | toolchain not installed | | | | | |");
            continue;
        };
        println!(
            "| {} | {} KB | {:.1} s | {:.1} MB | {:.0} | {:.1} µs | {:.1} µs |",
            row.language,
            row.size_kb,
            row.ready.as_secs_f64(),
            row.rss_mb,
            row.calls,
            row.mean_us,
            row.p99_us
        );
    }
}
