//! Debian's Dovecot 2.3 binaries as warden's services, on Dovecot's own
//! child interface: real IMAP and POP3 sessions through a running warden,
//! with the unmodified `config`, `anvil`, `auth`, `imap-login`,
//! `pop3-login`, `imap` and `pop3`. Each test needs root and the
//! `dovecot-core`, `dovecot-imapd` and `dovecot-pop3d` packages, and says
//! so when it skips.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::{Launch, Running, free_port, root_or_skip};

const WAIT: Duration = Duration::from_secs(20);

/// The binaries the tests run.
const BINARIES: [&str; 7] = [
    "config",
    "anvil",
    "auth",
    "imap-login",
    "pop3-login",
    "imap",
    "pop3",
];

/// Dovecot's log service, to add to a configuration: every process's
/// lines then go through it.
const LOG_SERVICE: &str = r#"
[service.log]
executable = "/usr/lib/dovecot/log"
interface = "dovecot"
"#;

/// The mail users: name, password, uid.
const USERS: [(&str, &str, u32); 2] = [("alice", "secret", 5000), ("bob", "hunter2", 5001)];

/// A warden running the Dovecot services, with the ports it serves.
struct Mail {
    warden: Running,
    imap: u16,
    pop3: u16,
    metrics: u16,
}

/// Whether the test can run: as root, with Dovecot installed.
fn can_run(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|binary| !Path::new("/usr/lib/dovecot").join(binary).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipped {test}: /usr/lib/dovecot lacks {missing:?}; install dovecot-core, dovecot-imapd and dovecot-pop3d"
        );
        return false;
    }
    true
}

/// Starts warden on the service graph of `examples/dovecot`, with
/// `extra` appended to its configuration, in a directory the mail users
/// can reach.
fn start(extra: &str) -> Mail {
    start_with(extra, "")
}

/// Like [`start`], with `imap_login` added to the settings of the
/// imap-login service.
fn start_with(extra: &str, imap_login: &str) -> Mail {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (imap, pop3, metrics) = (free_port(), free_port(), free_port());
    let mut users = String::new();
    for (name, password, uid) in USERS {
        let home = root.join("mail").join(name);
        std::fs::create_dir_all(&home).expect("mkdir home");
        nix::unistd::chown(&home, Some(uid.into()), Some(uid.into())).expect("chown home");
        users.push_str(&format!(
            "{name}:{{PLAIN}}{password}:{uid}:{uid}::{}\n",
            home.display()
        ));
    }
    std::fs::write(root.join("users"), users).expect("write users");
    let dovecot_conf = format!(
        "base_dir = {root}/run\nstate_dir = {root}/state\nprotocols = imap pop3\nlisten = 127.0.0.1\nssl = no\n\
         disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
         mail_location = maildir:{root}/mail/%u/Maildir\nfirst_valid_uid = 1000\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/users\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = username_format=%u {root}/users\n}}\n",
        root = root.display()
    );
    std::fs::write(root.join("dovecot.conf"), dovecot_conf).expect("write dovecot.conf");
    std::fs::create_dir_all(root.join("state")).expect("mkdir state");
    let body = format!(
        r#"dovecot_config = "{root}/dovecot.conf"
protocols = ["imap", "pop3"]
listen = "127.0.0.1"
ssl = "no"
metrics_listen = "127.0.0.1:{metrics}"
shutdown_clients = false

[service.config]
executable = "/usr/lib/dovecot/config"
interface = "dovecot"

[service.anvil]
executable = "/usr/lib/dovecot/anvil"
interface = "dovecot"

[service.auth]
executable = "/usr/lib/dovecot/auth"
interface = "dovecot"

[service.imap-login]
executable = "/usr/lib/dovecot/imap-login"
interface = "dovecot"
{imap_login}
[[service.imap-login.inet_listener]]
name = "imap"
port = {imap}

[service.pop3-login]
executable = "/usr/lib/dovecot/pop3-login"
interface = "dovecot"
[[service.pop3-login.inet_listener]]
name = "pop3"
port = {pop3}

[service.imap]
executable = "/usr/lib/dovecot/imap"
interface = "dovecot"

[service.pop3]
executable = "/usr/lib/dovecot/pop3"
interface = "dovecot"
{extra}"#,
        root = root.display()
    );
    let warden = Running::start_in(dir, &body, Launch::default());
    Mail {
        warden,
        imap,
        pop3,
        metrics,
    }
}

/// One line-oriented client connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone the stream")),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line
    }

    /// Whether the server closes the connection (end of file or reset,
    /// after any last lines such as `* BYE`) within the read timeout.
    fn closed(&mut self) -> bool {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    fn send(&mut self, text: &str) {
        self.writer
            .write_all(format!("{text}\r\n").as_bytes())
            .expect("send");
    }

    /// Sends an IMAP command tagged `tag` and returns every line up to and
    /// including the tagged answer.
    fn imap(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}"));
        self.until_tagged(tag)
    }

    fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "the server closed; so far: {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Logs in to IMAP as `user`; the tagged answer.
    fn imap_login(port: u16, user: &str, password: &str) -> (Client, String) {
        let mut client = Client::connect(port);
        let greeting = client.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let answer = client.imap("a1", &format!("LOGIN {user} \"{password}\""));
        let last = answer.last().cloned().unwrap_or_default();
        (client, last)
    }
}

/// What the metrics endpoint shows.
fn metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("ask for metrics");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("read metrics");
    page
}

/// Pids of every process running one of the Dovecot binaries.
fn dovecot_processes() -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.starts_with("/usr/lib/dovecot") {
            pids.push(pid);
        }
    }
    pids
}

// seed: type.special
// seed: svc.config
// seed: svc.auth
// seed: svc.login
// seed: svc.mail
// seed: priv.drop_priv_before_exec
#[test]
fn imap_and_pop3_clients_read_and_write_mail_through_warden() {
    if !can_run("imap_and_pop3_clients_read_and_write_mail_through_warden") {
        return;
    }
    let mail = start(LOG_SERVICE);
    let (mut imap, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(answer.starts_with("a1 OK"), "{answer}");
    let selected = imap.imap("a2", "SELECT INBOX");
    assert!(
        selected.last().is_some_and(|l| l.starts_with("a2 OK")),
        "{selected:?}"
    );
    let message =
        "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nhello alice\r\n";
    imap.send(&format!("a3 APPEND INBOX {{{}}}", message.len()));
    let go_on = imap.line();
    assert!(go_on.starts_with('+'), "{go_on}");
    imap.writer
        .write_all(format!("{message}\r\n").as_bytes())
        .expect("send the message");
    let appended = imap.until_tagged("a3");
    assert!(
        appended.last().is_some_and(|l| l.starts_with("a3 OK")),
        "{appended:?}"
    );
    imap.imap("a4", "SELECT INBOX");
    let fetched = imap.imap("a5", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(
        fetched.iter().any(|l| l.contains("Subject: hello")),
        "{fetched:?}"
    );
    let bye = imap.imap("a6", "LOGOUT");
    assert!(bye.iter().any(|l| l.starts_with("* BYE")), "{bye:?}");

    let mut pop3 = Client::connect(mail.pop3);
    assert!(pop3.line().starts_with("+OK"));
    pop3.send("USER alice");
    assert!(pop3.line().starts_with("+OK"));
    pop3.send("PASS secret");
    let logged_in = pop3.line();
    assert!(logged_in.starts_with("+OK"), "{logged_in}");
    pop3.send("STAT");
    let stat = pop3.line();
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    pop3.send("RETR 1");
    let mut retrieved = Vec::new();
    loop {
        let line = pop3.line();
        if line == ".\r\n" || line.is_empty() {
            break;
        }
        retrieved.push(line);
    }
    assert!(
        retrieved.iter().any(|l| l.contains("hello alice")),
        "{retrieved:?}"
    );
    pop3.send("QUIT");
    assert!(pop3.line().starts_with("+OK"));

    let (_refused, answer) = Client::imap_login(mail.imap, "alice", "wrong");
    assert!(
        answer.contains("AUTHENTICATIONFAILED"),
        "a wrong password must be refused: {answer}"
    );

    let ps = mail.warden.cli(&["ps"]);
    let ps = String::from_utf8_lossy(&ps.stdout);
    for service in ["config", "anvil", "auth"] {
        assert!(ps.contains(service), "warden ps lacks {service}:\n{ps}");
    }
    let page = metrics(mail.metrics);
    for service in ["imap-login", "imap", "pop3-login", "pop3"] {
        assert!(
            page.contains(&format!("warden_spawns_total{{service=\"{service}\"}}")),
            "no spawns of {service} counted:\n{page}"
        );
    }
    assert!(
        page.contains("warden_exits_total{service=\"imap-login\""),
        "no exits of imap-login counted:\n{page}"
    );
    let log = mail.warden.log();
    assert!(
        log.contains("imap-login: Info: Login: user=<alice>"),
        "Dovecot's log service writes the processes' lines:\n{log}"
    );
}

// seed: limits.service_count
#[test]
fn users_one_after_the_other_never_share_a_process() {
    if !can_run("users_one_after_the_other_never_share_a_process") {
        return;
    }
    let mail = start("");
    for _round in 0..2 {
        for (user, password, _) in USERS {
            let (mut client, answer) = Client::imap_login(mail.imap, user, password);
            assert!(answer.starts_with("a1 OK"), "{user}: {answer}");
            let selected = client.imap("a2", "SELECT INBOX");
            assert!(
                selected.last().is_some_and(|l| l.starts_with("a2 OK")),
                "{user}: {selected:?}"
            );
            client.imap("a3", "LOGOUT");
        }
    }
    let log = mail.warden.log();
    assert!(
        !log.contains("setgid(") && !log.contains("Fatal"),
        "a process served two users:\n{log}"
    );
    assert!(
        log.contains("imap-login: Login: user=<bob>"),
        "without a log service, warden decodes Dovecot's lines with their prefix:\n{log}"
    );
}

// seed: limits.client_limit
// seed: limits.process_limit
#[test]
fn ten_concurrent_logins_each_get_their_own_processes() {
    if !can_run("ten_concurrent_logins_each_get_their_own_processes") {
        return;
    }
    let mail = start("");
    let port = mail.imap;
    let clients: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || Client::imap_login(port, "alice", "secret")))
        .collect();
    let mut logged_in = Vec::new();
    for client in clients {
        let (client, answer) = client.join().expect("a client thread");
        assert!(answer.starts_with("a1 OK"), "{answer}");
        logged_in.push(client);
    }
    mail.warden.wait_for("ten imap processes", WAIT, || {
        mail.warden.pids("imap").len() >= 10
    });
    for (n, client) in logged_in.iter_mut().enumerate() {
        let tag = format!("n{n}");
        let answer = client.imap(&tag, "NOOP");
        assert!(
            answer
                .last()
                .is_some_and(|l| l.starts_with(&format!("{tag} OK"))),
            "{answer:?}"
        );
    }
}

#[test]
fn killed_login_and_mail_processes_leave_the_service_working() {
    if !can_run("killed_login_and_mail_processes_leave_the_service_working") {
        return;
    }
    let mail = start("");
    // A login process killed while its client has not logged in.
    let mut waiting = Client::connect(mail.imap);
    assert!(waiting.line().starts_with("* OK"));
    mail.warden.wait_for("an imap-login process", WAIT, || {
        !mail.warden.pids("imap-login").is_empty()
    });
    for pid in mail.warden.pids("imap-login") {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
            .expect("kill imap-login");
    }
    assert!(waiting.closed(), "its client is disconnected");
    // A mail process killed mid-session.
    let (mut client, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(answer.starts_with("a1 OK"), "{answer}");
    mail.warden.wait_for("an imap process", WAIT, || {
        !mail.warden.pids("imap").is_empty()
    });
    for pid in mail.warden.pids("imap") {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
            .expect("kill imap");
    }
    let _ = client.writer.write_all(b"a2 NOOP\r\n");
    assert!(client.closed(), "its client is disconnected");
    // New sessions work.
    let (mut client, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(answer.starts_with("a1 OK"), "after the kills: {answer}");
    client.imap("a2", "LOGOUT");
}

// seed: svc.anvil
#[test]
fn a_reload_keeps_a_logged_in_client_and_stop_leaves_no_dovecot_process() {
    if !can_run("a_reload_keeps_a_logged_in_client_and_stop_leaves_no_dovecot_process") {
        return;
    }
    let mut mail = start(LOG_SERVICE);
    let (mut client, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(answer.starts_with("a1 OK"), "{answer}");
    let anvil = mail.warden.pids("anvil");
    assert_eq!(anvil.len(), 1, "one anvil process");
    let before = mail.warden.log().matches("reloaded").count();
    mail.warden.signal(Signal::SIGHUP);
    mail.warden.wait_for("the reload", WAIT, || {
        mail.warden.log().matches("reloaded").count() > before
    });
    let answer = client.imap("a2", "SELECT INBOX");
    assert!(
        answer.last().is_some_and(|l| l.starts_with("a2 OK")),
        "the logged-in client is served after the reload: {answer:?}"
    );
    assert_eq!(mail.warden.pids("anvil"), anvil, "anvil survives reload");
    let (mut after, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(
        answer.starts_with("a1 OK"),
        "a new login after the reload: {answer}"
    );
    after.imap("a2", "LOGOUT");
    let log = mail.warden.log();
    assert!(
        !log.contains("signal 1"),
        "no Dovecot process was sent SIGHUP:\n{log}"
    );
    let mine: Vec<i32> = ["log", "config", "anvil", "auth", "imap", "imap-login"]
        .iter()
        .flat_map(|service| mail.warden.pids(service))
        .collect();
    assert!(mail.warden.stop().success());
    let left: Vec<i32> = dovecot_processes()
        .into_iter()
        .filter(|pid| mine.contains(pid))
        .collect();
    assert!(
        left.is_empty(),
        "Dovecot processes left after stop: {left:?}"
    );
    drop(client);
}

// seed: type.login
#[test]
fn a_full_login_service_tells_its_processes_to_make_room() {
    if !can_run("a_full_login_service_tells_its_processes_to_make_room") {
        return;
    }
    let mail = start_with("", "process_limit = 2");
    // Two clients that never log in fill both login processes.
    let mut first = Client::connect(mail.imap);
    assert!(first.line().starts_with("* OK"));
    let mut second = Client::connect(mail.imap);
    assert!(second.line().starts_with("* OK"));
    mail.warden.wait_for("the full state told", WAIT, || {
        mail.warden.log().lines().any(|line| {
            line.contains("telling the login processes whether every one is full")
                && line.contains("full=true")
        })
    });
    // A full login process closes its oldest client that has not logged
    // in, so the third connection is served.
    let (mut third, answer) = Client::imap_login(mail.imap, "alice", "secret");
    assert!(answer.starts_with("a1 OK"), "{answer}");
    third.imap("a2", "LOGOUT");
    // The process whose listener woke for the third connection closed
    // its client, which had not logged in; which of the two that is, the
    // race for the accept decides.
    let closed = [&mut first, &mut second]
        .into_iter()
        .filter_map(|client| {
            client
                .reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(2)))
                .ok()?;
            Some(client.closed())
        })
        .filter(|closed| *closed)
        .count();
    assert!(closed >= 1, "a client that had not logged in made room");
}

/// Whether Dovecot's configuration tools are installed, or why the test
/// cannot run.
fn doveconf_or_skip(test: &str) -> bool {
    let installed = Path::new("/usr/bin/doveconf").exists()
        && BINARIES
            .iter()
            .all(|binary| Path::new("/usr/lib/dovecot").join(binary).exists());
    if !installed {
        eprintln!("skipped {test}: install dovecot-core, dovecot-imapd and dovecot-pop3d");
    }
    installed
}

/// Imports `dovecot_conf`, checks what `warden import` wrote with `warden
/// check`, and returns it.
fn import_and_check(dovecot_conf: &Path, dir: &Path) -> String {
    let written = dir.join("imported.toml");
    let import = std::process::Command::new(warden_tests::warden())
        .arg("import")
        .arg(dovecot_conf)
        .arg("-o")
        .arg(&written)
        .output()
        .expect("run warden import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let check = warden_tests::check(&written);
    let text = std::fs::read_to_string(&written).expect("read the import");
    assert!(
        check.status.success(),
        "warden check refused the import:\n{}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    text
}

#[test]
fn debian_s_shipped_dovecot_configuration_imports_into_one_warden_accepts() {
    let test = "debian_s_shipped_dovecot_configuration_imports_into_one_warden_accepts";
    if !doveconf_or_skip(test) || !Path::new("/etc/dovecot/conf.d/10-master.conf").exists() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let text = import_and_check(Path::new("/etc/dovecot/dovecot.conf"), dir.path());
    for service in [
        "log",
        "config",
        "anvil",
        "auth",
        "imap-login",
        "imap",
        "pop3",
    ] {
        assert!(
            text.contains(&format!("[service.{service}]\n")),
            "{service} missing:\n{text}"
        );
    }
    assert!(
        text.contains("[[service.auth.unix_listener]]\npath = \"auth-userdb\""),
        "10-master.conf's auth-userdb listener:\n{text}"
    );
}

// seed: svc.auth-worker
// seed: svc.anvil
// seed: listen.inet.address
// seed: listen.unix.owner
// seed: listen.fifo
#[test]
fn the_service_settings_of_the_documentation_import_and_check() {
    if !doveconf_or_skip("the_service_settings_of_the_documentation_import_and_check") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot_conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &dovecot_conf,
        "base_dir = /run/dovecot\nprotocols = imap pop3 lmtp\n\
         default_process_limit = 200\ndefault_vsz_limit = 512M\n\
         service auth-worker {\n  client_limit = 1\n  service_count = 1\n  user = root\n}\n\
         service imap-login {\n  service_count = 0\n  process_min_avail = 4\n  vsz_limit = 1G\n\
         \x20 inet_listener imap {\n    address = 127.0.0.1 ::1\n    port = 143\n  }\n\
         \x20 inet_listener imaps {\n    port = 0\n  }\n}\n\
         service dict {\n  unix_listener dict {\n    mode = 0660\n    user = mail\n    group = mail\n  }\n}\n\
         service anvil {\n  chroot = empty\n  user = $default_internal_user\n  idle_kill = 0\n}\n\
         service stats {\n  fifo_listener stats-mail {\n    mode = 0600\n  }\n}\n\
         service imap {\n  executable = imap\n  process_limit = 2048\n}\n",
    )
    .expect("write dovecot.conf");
    let text = import_and_check(&dovecot_conf, dir.path());
    let config: toml::Table = text.parse().expect("valid TOML");
    assert_eq!(config["default_process_limit"].as_integer(), Some(200));
    let service = &config["service"];
    assert_eq!(
        service["auth-worker"]["service_count"].as_integer(),
        Some(1)
    );
    assert_eq!(
        service["imap-login"]["process_min_avail"].as_integer(),
        Some(4)
    );
    assert_eq!(
        service["imap-login"]["inet_listener"][0]["address"].as_str(),
        Some("127.0.0.1 ::1")
    );
    assert_eq!(
        service["dict"]["unix_listener"][0]["user"].as_str(),
        Some("mail")
    );
    assert_eq!(service["anvil"]["chroot"].as_str(), Some("empty"));
    assert_eq!(
        service["stats"]["fifo_listener"][0]["path"].as_str(),
        Some("stats-mail")
    );
    assert_eq!(
        service["imap"]["executable"].as_str(),
        Some("/usr/lib/dovecot/imap")
    );
}

#[test]
fn check_names_a_dovecot_configuration_with_another_base_dir() {
    if !doveconf_or_skip("check_names_a_dovecot_configuration_with_another_base_dir") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot_conf = dir.path().join("dovecot.conf");
    std::fs::write(&dovecot_conf, "base_dir = /run/elsewhere\n").expect("write dovecot.conf");
    let config = warden_tests::write_config(
        dir.path(),
        &format!(
            "dovecot_config = \"{}\"\n[service.config]\nexecutable = \"/usr/lib/dovecot/config\"\ninterface = \"dovecot\"\n",
            dovecot_conf.display()
        ),
    );
    let check = warden_tests::check(&config);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("has base_dir = /run/elsewhere, but warden's base_dir is")
            && stderr.contains("write base_dir ="),
        "{stderr}"
    );
}
