//! Helpers for warden's end-to-end tests.
//!
//! The tests run the real `warden` binary, built by the same cargo that runs
//! them, and the probe: a small static program that reports what a spawned
//! process got (ids, groups, root, limits, descriptors, environment).

#![allow(
    clippy::expect_used,
    reason = "test helpers fail loudly on what they cannot set up"
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use warden::control::{ProcessStatus, Request, Response, ServiceStatus};
use warden_policy::{ConnectionView, PeerView, ServiceKind, ServiceView, SourceCounts};
use warden_sys::{Exit, SpawnError, SpawnPlan};

/// The path of the `warden` binary, built once per test process with the
/// profile the tests themselves were built with.
pub fn warden() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let build = escargot::CargoBuild::new()
            .package("warden")
            .bin("warden")
            .current_release()
            .run()
            .unwrap_or_else(|error| panic!("cannot build the warden binary: {error}"));
        build.path().to_path_buf()
    })
}

/// The probe: a static executable built from `probe/probe.c`.
pub fn probe() -> &'static Path {
    Path::new(env!("WARDEN_PROBE"))
}

/// Whether this process runs as root. When it does not, says which test is
/// skipped and why, so the skip is visible in the output.
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped {test}: it changes user, groups or root directory, which needs root");
    }
    root
}

/// What the probe reported, line by line: `key=value`.
#[derive(Debug, Default)]
pub struct Report {
    lines: BTreeMap<String, String>,
    /// How the probe exited.
    pub exit: Option<Exit>,
}

impl Report {
    /// The value reported for `key` (`uid`, `fd.3`, `env.PATH`…).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.get(key).map(String::as_str)
    }

    /// The value for `key`, or a panic naming what the probe said instead.
    pub fn value(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("the probe reported no {key}: {:#?}", self.lines))
    }

    /// Every key starting with `prefix`, with its value.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.lines
            .range(prefix.to_owned()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// Runs the probe with `arguments` as `plan` says (its stdout, fd 1, is
/// added to the plan here), waits for it and returns its report.
pub fn run_probe(mut plan: SpawnPlan) -> Result<Report, SpawnError> {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    plan.fd(write, 1);
    let child = plan.spawn()?;
    let mut output = String::new();
    std::fs::File::from(read)
        .read_to_string(&mut output)
        .expect("read the probe's report");
    let exit = child.wait().expect("wait for the probe");
    let mut report = Report {
        exit: Some(exit),
        ..Report::default()
    };
    for line in output.lines() {
        if let Some((key, value)) = line.split_once('=') {
            report.lines.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(report)
}

/// A plan to run the probe with `arguments`.
pub fn probe_plan(arguments: &[&str]) -> SpawnPlan {
    let mut argv = vec![probe().as_os_str().to_owned()];
    argv.extend(arguments.iter().map(Into::into));
    SpawnPlan::new("probe", argv)
}

/// The example echo service (`examples/echo`).
pub fn echo() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("warden-example-echo", "warden-echo"))
}

/// The configuration of a service `name` running the example echo
/// service, with `settings` written under it and an inet listener on
/// 127.0.0.1:`port`.
pub fn echo_service(name: &str, port: u16, settings: &str) -> String {
    format!(
        r#"
[service.{name}]
executable = {executable:?}
{settings}

[[service.{name}.inet_listener]]
name = "{name}"
address = "127.0.0.1"
port = {port}
"#,
        executable = echo().display().to_string()
    )
}

/// The configuration of the example whoami service on the inetd
/// interface (`process_limit = 100`), with `settings` written under it and
/// an inet listener on 127.0.0.1:`port`.
pub fn whoami_service(port: u16, settings: &str) -> String {
    format!(
        r#"
[service.whoami]
executable = {executable:?}
interface = "inetd"
process_limit = 100
{settings}

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {port}
"#,
        executable = whoami().display().to_string()
    )
}

/// The example login service (`examples/login`), on the native interface.
pub fn login() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("warden-example-login", "warden-login"))
}

/// The component of the plugin fixture `plugins/fixtures/NAME`.
pub fn fixture(name: &str) -> &'static [u8] {
    warden_policy::FIXTURES
        .iter()
        .find(|(fixture, _)| *fixture == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// The example inetd service (`examples/inetd-whoami`).
pub fn whoami() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("warden-example-inetd-whoami", "warden-whoami"))
}

fn build_example(package: &str, bin: &str) -> PathBuf {
    escargot::CargoBuild::new()
        .package(package)
        .bin(bin)
        .current_release()
        .run()
        .unwrap_or_else(|error| panic!("cannot build {bin}: {error}"))
        .path()
        .to_path_buf()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, and that
/// no other test of this process was given: tests run side by side, and a
/// port one released before its warden bound it could otherwise go to
/// another.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("an ephemeral port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The plugin cache every test's warden shares, beside the binary: the
/// built-ins are compiled once for a whole test run, not once per test.
pub fn plugin_cache() -> PathBuf {
    warden()
        .parent()
        .expect("the binary is in a directory")
        .join("test-plugin-cache")
}

/// Writes `body` as `dir/warden.toml`, after a `base_dir` of `dir/run` and,
/// unless `body` sets its own, the shared [`plugin_cache`]; returns the
/// file's path.
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let config = dir.join("warden.toml");
    let base = dir.join("run");
    let cache = if body.contains("plugin_cache") {
        String::new()
    } else {
        format!(
            "plugin_cache = {:?}\n",
            plugin_cache().display().to_string()
        )
    };
    std::fs::write(
        &config,
        format!("base_dir = {:?}\n{cache}{body}", base.display().to_string()),
    )
    .expect("write the configuration");
    config
}

/// Runs `warden check -c config`.
pub fn check(config: &Path) -> std::process::Output {
    std::process::Command::new(warden())
        .arg("check")
        .arg("-c")
        .arg(config)
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run warden check")
}

/// How a test warden is started, beyond its configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct Launch {
    /// Whether `warden run` gets `--pid-file`, in the temporary directory
    /// ([`Running::pid_file`]).
    pub pid_file: bool,
    /// The descriptor limit (`RLIMIT_NOFILE`) it runs under, soft and
    /// hard, set by the shell that then becomes warden (`ulimit -Sn`, then
    /// `ulimit -Hn`: the hard limit cannot go below the soft one), as an
    /// operator's `ulimit -n` would be; `hard` must not be above the
    /// test's own. `None` leaves the test's own.
    pub open_files: Option<(u64, u64)>,
    /// Whether it logs at `info` only, as an operator runs it (for
    /// benchmarks), instead of with warden's debug lines that tests read.
    pub quiet: bool,
}

/// A running `warden run`, with its own `base_dir` and log file, stopped
/// (and, if need be, killed) when dropped. It can be killed and started
/// again on the same configuration and `base_dir`, as an operator would
/// after a crash.
pub struct Running {
    process: Option<std::process::Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    control: PathBuf,
    log: PathBuf,
    /// How it is started, again too.
    launch: Launch,
}

impl Running {
    /// Starts warden with `body` as its configuration; `base_dir` is set to
    /// a fresh temporary directory (`body` must leave `control_socket` at
    /// its default). Returns once the control socket answers.
    pub fn start(body: &str) -> Running {
        Running::start_with(body, Launch::default())
    }

    /// Like [`Running::start`], logging at `info` only, as an operator
    /// runs it: what a benchmark measures (warden's debug lines cost a
    /// write per connection).
    pub fn start_quiet(body: &str) -> Running {
        Running::start_with(
            body,
            Launch {
                quiet: true,
                ..Launch::default()
            },
        )
    }

    /// Like [`Running::start`], started as `launch` says.
    pub fn start_with(body: &str, launch: Launch) -> Running {
        Running::start_in(tempfile::tempdir().expect("tempdir"), body, launch)
    }

    /// Like [`Running::start_with`], in `dir`, which the test prepared
    /// (files the services read before the first connection); `base_dir`
    /// is `dir/run`.
    pub fn start_in(dir: tempfile::TempDir, body: &str, launch: Launch) -> Running {
        let config = write_config(dir.path(), body);
        let log = dir.path().join("warden.log");
        let control = dir.path().join("run").join("control");
        let mut running = Running {
            process: None,
            dir,
            config,
            control,
            log,
            launch,
        };
        // The first warden of a test run compiles every built-in plugin
        // into the shared cache, which takes seconds on a loaded machine
        // running tests side by side.
        running.run(Duration::from_secs(60));
        running
    }

    /// Starts `warden run` again on the same configuration, `base_dir` and
    /// log file, after it stopped or was killed. Returns once the control
    /// socket answers.
    pub fn start_again(&mut self) {
        assert!(
            self.process.is_none(),
            "warden is still running; stop or kill it first"
        );
        // The plugins are compiled already, in the shared cache.
        self.run(Duration::from_secs(20));
    }

    /// Runs `warden run` and waits up to `timeout` for its control socket.
    fn run(&mut self, timeout: Duration) {
        let mut command = match self.launch.open_files {
            Some((soft, hard)) => {
                let mut shell = std::process::Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!(
                        "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(warden());
                shell
            }
            None => std::process::Command::new(warden()),
        };
        command
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .arg("--log-file")
            .arg(&self.log)
            .env(
                "WARDEN_LOG",
                if self.launch.quiet {
                    "info"
                } else {
                    "info,warden=debug,warden_policy=debug"
                },
            );
        if self.launch.pid_file {
            command.arg("--pid-file").arg(self.pid_file());
        }
        self.process = Some(command.spawn().expect("start warden run"));
        self.wait_for("the control socket", timeout, || {
            self.try_request(&Request::Status).is_ok()
        });
    }

    /// Runs `warden ARGS -c CONFIG` against this warden, as an operator
    /// would, and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(warden())
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .env_remove("WARDEN_CONFIG")
            .output()
            .unwrap_or_else(|error| panic!("cannot run warden {args:?}: {error}"))
    }

    /// The configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The temporary directory holding the configuration, log and base_dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket.
    pub fn control_socket(&self) -> &Path {
        &self.control
    }

    /// The pid file, when started with [`Launch::pid_file`].
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("warden.pid")
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        let process = self.process.as_ref().expect("warden is running");
        i32::try_from(process.id()).expect("a pid fits")
    }

    fn try_request(&self, request: &Request) -> Result<Response, warden::control::ClientError> {
        warden::control::request(&self.control, request)
    }

    /// Sends a control request.
    pub fn request(&self, request: &Request) -> Response {
        self.try_request(request).unwrap_or_else(|error| {
            panic!(
                "control request {request:?} failed: {error}\n{}",
                self.log()
            )
        })
    }

    /// The processes of `service`.
    pub fn ps(&self, service: &str) -> Vec<ProcessStatus> {
        match self.request(&Request::Ps {
            service: Some(service.to_owned()),
        }) {
            Response::Ps { processes } => processes,
            other => panic!("ps answered {other:?}"),
        }
    }

    /// The pids of `service`'s processes, not counting old ones draining.
    pub fn pids(&self, service: &str) -> Vec<i32> {
        self.ps(service)
            .into_iter()
            .filter(|p| p.state != "draining")
            .map(|p| p.pid)
            .collect()
    }

    /// The status of `service`.
    pub fn status(&self, service: &str) -> ServiceStatus {
        match self.request(&Request::Status) {
            Response::Status { services } => services
                .into_iter()
                .find(|s| s.name == service)
                .unwrap_or_else(|| panic!("no service {service}")),
            other => panic!("status answered {other:?}"),
        }
    }

    /// The log so far, without terminal colours.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `condition` holds, or panics after `timeout` naming
    /// `what` and showing the log.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the master.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal warden");
    }

    /// Rewrites the configuration (with the same base_dir) and reloads.
    pub fn reload_with(&self, body: &str) {
        write_config(self.dir.path(), body);
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// Kills the master with SIGKILL, as a crash or the OOM killer would,
    /// and collects it. Its processes are left to fend for themselves.
    pub fn kill(&mut self) {
        let mut process = self.process.take().expect("warden is running");
        process.kill().expect("SIGKILL warden");
        process.wait().expect("collect warden");
    }

    /// Stops warden with SIGTERM and waits for it; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut process = self.process.take().expect("warden is running");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_wait().expect("wait for warden") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "warden did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(process.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if process.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A line-based client of a test service.
pub struct LineClient {
    stream: std::net::TcpStream,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl LineClient {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> std::io::Result<LineClient> {
        Ok(LineClient::from_stream(std::net::TcpStream::connect((
            "127.0.0.1",
            port,
        ))?))
    }

    /// A client over `stream`, connected by the caller.
    pub fn from_stream(stream: std::net::TcpStream) -> LineClient {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("a read timeout");
        let reader = std::io::BufReader::new(stream.try_clone().expect("a second handle"));
        LineClient { stream, reader }
    }

    /// The next line, without its newline; `None` at end of input.
    pub fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut self.reader, &mut line)?;
        Ok((read > 0).then(|| line.trim_end().to_owned()))
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.send_bytes(format!("{line}\n").as_bytes())
    }

    /// Sends `bytes` as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.stream, bytes)
    }

    /// Whether the other end closed the connection: end of input, or a
    /// reset.
    pub fn closed(&mut self) -> bool {
        match self.line() {
            Ok(None) => true,
            Ok(Some(_)) => false,
            Err(error) => {
                error.kind() != std::io::ErrorKind::WouldBlock
                    && error.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }

    /// The pid an echo server greets with (`hello from <pid>`).
    pub fn echo_pid(&mut self) -> i32 {
        let greeting = self.line().expect("read the greeting").expect("a greeting");
        greeting
            .strip_prefix("hello from ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("not an echo greeting: {greeting:?}"))
    }
}

/// The fields of `/proc/PID/stat` after the command name, which may hold
/// spaces: the state first (`R`, `S`, `Z`…), then the parent's pid, and
/// so on (field N of proc(5) is at N - 3). `None` once the process is
/// gone.
pub fn proc_stat(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// The signals process `pid` catches and those it ignores, as its
/// `/proc/PID/status` shows them: bit `n - 1` for signal `n`.
pub fn signal_masks(pid: impl std::fmt::Display) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("a signal mask")
    };
    (mask("SigCgt:"), mask("SigIgn:"))
}

/// What an inetd service with `per_source_rate` set asks its admission
/// hook at each connection: the service, a connection from 127.0.0.1,
/// and that source's counts.
pub fn inetd_admission() -> (ServiceView<'static>, ConnectionView, SourceCounts) {
    let service = ServiceView {
        name: "whoami",
        kind: ServiceKind::Default,
        protocol: "",
        policies: &[],
        service_count: Some(1),
        client_limit: 1,
        process_limit: 100,
        process_min_avail: 0,
        idle_kill_ms: None,
        per_source_limit: None,
        per_source_rate: Some(100_000),
    };
    let connection = ConnectionView {
        id: 0,
        listener: "whoami".to_owned(),
        peer: PeerView {
            address: Some("127.0.0.1".to_owned()),
            port: Some(40_000),
            ..PeerView::default()
        },
        accepted_ms: 1_000,
        authenticated: false,
        pid: 0,
    };
    let counts = SourceCounts {
        concurrent: 1,
        last_second: 1,
    };
    (service, connection, counts)
}

/// Whether process `pid` still runs: it exists and is not a zombie.
pub fn running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// The resident memory of process `pid`, in MB, from `/proc/PID/status`.
pub fn resident_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// One of the example plugins of `examples/plugins/LANGUAGE/POLICY`.
#[derive(Debug, Clone, Copy)]
pub struct ExamplePlugin {
    /// `rust`, `python`, `javascript` or `c`.
    pub language: &'static str,
    /// `admission` or `idle`.
    pub policy: &'static str,
}

impl ExamplePlugin {
    /// Its directory.
    pub fn dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/plugins")
            .join(self.language)
            .join(self.policy)
    }

    /// The name the plugin gives in `describe`.
    pub fn name(&self) -> String {
        let prefix = match self.language {
            "javascript" => "js",
            other => other,
        };
        format!("{prefix}-{}", self.policy)
    }

    /// Builds it into `out` with its `build.sh`; `None`, with the reason
    /// printed, when its toolchain is not installed (the script exits 77).
    pub fn build(&self, out: &Path) -> Option<PathBuf> {
        let wasm = out.join(format!("{}.wasm", self.name()));
        // Rust examples build in a target directory kept between runs.
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/example-plugins");
        let built = std::process::Command::new("sh")
            .arg(self.dir().join("build.sh"))
            .arg(&wasm)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run build.sh");
        match built.status.code() {
            Some(0) => Some(wasm),
            Some(77) => {
                eprintln!(
                    "skipped the {} example: {}",
                    self.name(),
                    String::from_utf8_lossy(&built.stderr).trim()
                );
                None
            }
            _ => panic!(
                "building the {} example failed:\n{}{}",
                self.name(),
                String::from_utf8_lossy(&built.stdout),
                String::from_utf8_lossy(&built.stderr)
            ),
        }
    }
}
