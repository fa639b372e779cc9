//! Dovecot's own master against warden, on the same Dovecot binaries.
//!
//! Starts `dovecot -F` and `warden run` side by side, each with its own
//! `base_dir` and port and the same service graph (log, config, anvil,
//! auth, pop3-login, pop3), and times what every client meets first: a
//! pop3-login process greeting it. Each connection is opened, the banner
//! read, and closed; the latency is from `connect` to the banner. Run one
//! client after another and eight at once, in rounds that alternate the
//! two masters (the machine is noisy; the median round is printed), with
//! `service_count = 1` (a process per connection, started on demand) and
//! again with four processes preforked (`process_min_avail = 4`).
//!
//!     sudo cargo bench -p warden-tests --bench dovecot
//!
//! Needs root and Debian's dovecot-core and dovecot-pop3d.

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warden_tests::{Launch, Running, free_port};

/// How long one side is measured per round.
const ROUND: Duration = Duration::from_secs(3);

/// Rounds per side; the median is printed.
const ROUNDS: usize = 5;

/// Concurrent clients in the concurrent run.
const CONCURRENT: usize = 8;

/// What one round measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Connects to `port` and reads the banner, as one client, until `until`;
/// every connection's latency.
fn client(port: u16, until: Instant) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let opened = Instant::now();
        let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut banner = String::new();
        if BufReader::new(&stream).read_line(&mut banner).is_ok() && banner.starts_with("+OK") {
            latencies.push(opened.elapsed());
        }
    }
    latencies
}

/// One round against `port` with `clients` at once.
fn round(port: u16, clients: usize) -> Figures {
    let start = Instant::now();
    let until = start + ROUND;
    let threads: Vec<_> = (0..clients)
        .map(|_| std::thread::spawn(move || client(port, until)))
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread"))
        .collect();
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn median(mut rounds: Vec<Figures>) -> Figures {
    rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    rounds[rounds.len() / 2]
}

/// A dovecot.conf for a POP3 server at `port`, with `base_dir`, mail users
/// in `dir`, and `login` added to the pop3-login service.
fn dovecot_conf(dir: &Path, base_dir: &Path, port: u16, login: &str) -> String {
    format!(
        "base_dir = {base}\nstate_dir = {dir}/state\ninstance_name = bench-{port}\nprotocols = pop3\n\
         listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\nlog_path = {dir}/dovecot-{port}.log\n\
         mail_location = maildir:{dir}/mail/%u/Maildir\nfirst_valid_uid = 1000\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {dir}/users\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = username_format=%u {dir}/users\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    port = {port}\n  }}\n  \
         inet_listener pop3s {{\n    port = 0\n  }}\n  {login}\n}}\n",
        base = base_dir.display(),
        dir = dir.display(),
    )
}

/// Waits until `port` greets.
fn wait_for_banner(port: u16, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client(port, Instant::now() + Duration::from_millis(1)).is_empty() {
        assert!(Instant::now() < deadline, "{who} never greeted on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Dovecot's own master, stopped when dropped.
struct Dovecot(std::process::Child);

impl Drop for Dovecot {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or_default());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn print(what: &str, dovecot: Figures, warden: Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<34} dovecot {:>7.0}/s p50 {:>6.2} ms p99 {:>6.2} ms | warden {:>7.0}/s p50 {:>6.2} ms p99 {:>6.2} ms | warden/dovecot {:.2}x",
        dovecot.per_second,
        ms(dovecot.p50),
        ms(dovecot.p99),
        warden.per_second,
        ms(warden.p50),
        ms(warden.p99),
        warden.per_second / dovecot.per_second,
    );
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: Dovecot's master and its binaries need root");
        return;
    }
    let needed = [
        "/usr/sbin/dovecot",
        "/usr/lib/dovecot/pop3-login",
        "/usr/lib/dovecot/pop3",
    ];
    if let Some(missing) = needed.iter().find(|p| !Path::new(p).exists()) {
        println!("skipped: {missing} is missing; install dovecot-core and dovecot-pop3d");
        return;
    }
    for (mode, login) in [
        ("service_count = 1", "service_count = 1"),
        (
            "prefork, process_min_avail = 4",
            "service_count = 1\n  process_min_avail = 4",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(root.join("state")).expect("mkdir state");
        std::fs::write(
            root.join("users"),
            "alice:{PLAIN}secret:5000:5000::/nonexistent\n",
        )
        .expect("write users");
        let (dovecot_port, warden_port) = (free_port(), free_port());
        let dovecot_base: PathBuf = root.join("dovecot-run");
        let dovecot_config = root.join("dovecot.conf");
        std::fs::write(
            &dovecot_config,
            dovecot_conf(root, &dovecot_base, dovecot_port, login),
        )
        .expect("write dovecot.conf");
        let dovecot = Dovecot(
            std::process::Command::new("/usr/sbin/dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&dovecot_config)
                .spawn()
                .expect("start dovecot -F"),
        );
        let warden_dir = tempfile::tempdir().expect("tempdir");
        let warden_config = root.join("dovecot-warden.conf");
        std::fs::write(
            &warden_config,
            dovecot_conf(root, &warden_dir.path().join("run"), warden_port, login),
        )
        .expect("write warden's dovecot.conf");
        let service = |name: &str| {
            format!(
                "[service.{name}]\nexecutable = \"/usr/lib/dovecot/{name}\"\ninterface = \"dovecot\"\n"
            )
        };
        let login_settings = login.replace("\n  ", "\n");
        let body = format!(
            "dovecot_config = \"{}\"\nprotocols = [\"pop3\"]\nlisten = \"127.0.0.1\"\nssl = \"no\"\n{}{}{}{}{}\
             [service.pop3-login]\nexecutable = \"/usr/lib/dovecot/pop3-login\"\ninterface = \"dovecot\"\n{login_settings}\n\
             [[service.pop3-login.inet_listener]]\nname = \"pop3\"\nport = {warden_port}\n\
             [[service.pop3-login.inet_listener]]\nname = \"pop3s\"\nport = 0\n",
            warden_config.display(),
            service("log"),
            service("config"),
            service("anvil"),
            service("auth"),
            service("pop3"),
        );
        let launch = Launch {
            quiet: true,
            ..Launch::default()
        };
        let warden = Running::start_in(warden_dir, &body, launch);
        wait_for_banner(dovecot_port, "dovecot");
        wait_for_banner(warden_port, "warden");
        for clients in [1, CONCURRENT] {
            let (mut theirs, mut ours) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                theirs.push(round(dovecot_port, clients));
                ours.push(round(warden_port, clients));
            }
            let what = format!("{mode}, {clients} client(s)");
            print(&what, median(theirs), median(ours));
        }
        drop(warden);
        drop(dovecot);
    }
}
