//! Listeners opened from a configuration: what exists on disk and on the
//! network afterwards, and what does not.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use warden::accounts::{self, Accounts};
use warden::config::Config;
use warden::listen::{OpenListener, open};
use warden_sys::Endpoint;

fn config(base_dir: &Path, body: &str) -> Config {
    let source = format!("base_dir = {:?}\n{body}", base_dir.display().to_string());
    Config::parse("test.toml", &source).unwrap_or_else(|problems| panic!("{problems}"))
}

/// Opens the first service's listeners with the users and groups the
/// configuration names, looked up as the master does at start.
fn open_all(config: &Config) -> Vec<OpenListener> {
    let accounts = accounts::resolve(config).unwrap_or_else(|problems| panic!("{problems:?}"));
    open(config, &config.services[0], &accounts).expect("open the listeners")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

// seed: listen.unix.path
// seed: listen.unix.mode
#[test]
fn unix_listeners_are_created_under_base_dir_with_their_exact_mode() {
    let base = tempfile::tempdir().expect("tempdir");
    let config = config(
        base.path(),
        r#"
        [service.auth]
        executable = "/usr/lib/dovecot/auth"
        [[service.auth.unix_listener]]
        path = "login/login"
        mode = "0666"
        [[service.auth.unix_listener]]
        path = "auth-master"
        [[service.auth.unix_listener]]
        path = "auth-disabled"
        mode = 0
        "#,
    );
    let listeners = open_all(&config);
    assert_eq!(listeners.len(), 2);
    let login = std::fs::metadata(base.path().join("login/login")).expect("login/login");
    assert!(login.file_type().is_socket());
    assert_eq!(login.mode() & 0o7777, 0o666);
    let master = std::fs::metadata(base.path().join("auth-master")).expect("auth-master");
    assert_eq!(master.mode() & 0o7777, 0o600);
    assert!(
        !base.path().join("auth-disabled").exists(),
        "mode 0 created a socket"
    );
    assert_eq!(listeners[0].wanted.name, "login");
    UnixStream::connect(base.path().join("login/login")).expect("connect");
}

// seed: listen.unix.owner
#[test]
fn unix_listeners_belong_to_their_user_and_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped unix_listeners_belong_to_their_user_and_group: chown needs root");
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let config = config(
        base.path(),
        r#"
        [service.stats]
        executable = "/bin/cat"
        [[service.stats.unix_listener]]
        path = "stats-writer"
        mode = "0660"
        user = "nobody"
        group = "mail"
        [[service.stats.unix_listener]]
        path = "stats-reader"
        "#,
    );
    open_all(&config);
    let writer = std::fs::metadata(base.path().join("stats-writer")).expect("stats-writer");
    assert_eq!((writer.uid(), writer.gid()), (65534, 8));
    // Without user and group, the socket stays root's.
    let reader = std::fs::metadata(base.path().join("stats-reader")).expect("stats-reader");
    assert_eq!((reader.uid(), reader.gid()), (0, 0));
}

#[test]
fn an_owner_that_does_not_exist_is_named_with_the_setting_to_change() {
    let base = tempfile::tempdir().expect("tempdir");
    let config = config(
        base.path(),
        r#"
        [service.stats]
        executable = "/usr/lib/dovecot/stats"
        [[service.stats.unix_listener]]
        path = "stats-writer"
        user = "no-such-user-for-warden"
        "#,
    );
    let error =
        open(&config, &config.services[0], &Accounts::default()).expect_err("an unknown owner");
    let message = error.to_string();
    assert!(
        message.contains(r#"the user "no-such-user-for-warden" of listener"#)
            && message.contains("change service.stats's listener user"),
        "{message}"
    );
}

// seed: listen.fifo
#[test]
fn fifo_listeners_follow_the_same_path_owner_and_mode_rules() {
    let base = tempfile::tempdir().expect("tempdir");
    let config = config(
        base.path(),
        r#"
        [service.director]
        executable = "/usr/lib/dovecot/director"
        [[service.director.fifo_listener]]
        path = "login/proxy-notify"
        mode = "0620"
        [[service.director.fifo_listener]]
        path = "off"
        mode = "0"
        "#,
    );
    let listeners = open_all(&config);
    assert_eq!(listeners.len(), 1);
    let meta = std::fs::metadata(base.path().join("login/proxy-notify")).expect("fifo");
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.mode() & 0o7777, 0o620);
    assert!(!base.path().join("off").exists());
}

// seed: listen.inet.address
#[test]
fn an_inet_listener_binds_each_of_its_addresses_or_the_global_listen() {
    let base = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config(
        base.path(),
        &format!(
            r#"
            listen = "127.0.0.1"
            [service.imap-login]
            executable = "/usr/lib/dovecot/imap-login"
            [[service.imap-login.inet_listener]]
            name = "imap"
            address = "* ::"
            port = {port}
            [[service.imap-login.inet_listener]]
            name = "imap-local"
            port = {other}
            "#,
            other = free_port()
        ),
    );
    let listeners = open_all(&config);
    let endpoints: Vec<String> = listeners
        .iter()
        .map(|l| l.listener.endpoint().to_string())
        .collect();
    assert_eq!(
        endpoints[..2],
        [format!("inet:0.0.0.0:{port}"), format!("inet:[::]:{port}")]
    );
    assert!(matches!(
        listeners[2].listener.endpoint(),
        Endpoint::Inet(address) if address.ip() == Ipv4Addr::LOCALHOST
    ));
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("IPv4 through *");
    TcpStream::connect(("::1", port)).expect("IPv6 through ::");
}

// seed: listen.inet.port
// seed: listen.inet.ssl
#[test]
fn port_0_and_tls_listeners_without_global_ssl_create_nothing() {
    let base = tempfile::tempdir().expect("tempdir");
    let (plain, tls) = (free_port(), free_port());
    let config = config(
        base.path(),
        &format!(
            r#"
            ssl = "no"
            listen = "127.0.0.1"
            [service.pop3-login]
            executable = "/usr/lib/dovecot/pop3-login"
            [[service.pop3-login.inet_listener]]
            name = "pop3"
            port = {plain}
            [[service.pop3-login.inet_listener]]
            name = "pop3s"
            port = {tls}
            ssl = true
            [[service.pop3-login.inet_listener]]
            name = "disabled"
            port = 0
            "#
        ),
    );
    let listeners = open_all(&config);
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].wanted.name, "pop3");
    TcpStream::connect((Ipv4Addr::LOCALHOST, plain)).expect("the plain listener");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, tls)).is_err(),
        "the TLS listener exists although ssl = no"
    );
}

/// Connects to `path` without blocking until the listen queue is full;
/// returns how many connections it took.
fn fill_queue(path: &Path) -> usize {
    let mut held = Vec::new();
    loop {
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        let address = nix::sys::socket::UnixAddr::new(path).expect("address");
        match nix::sys::socket::connect(socket.as_raw_fd(), &address) {
            Ok(()) => held.push(socket),
            Err(nix::errno::Errno::EAGAIN) => return held.len(),
            Err(errno) => panic!("connect: {errno}"),
        }
        assert!(held.len() < 10_000, "the listen queue never filled");
    }
}

// seed: limits.max_connections
#[test]
fn the_listen_queue_holds_the_service_capacity() {
    let base = tempfile::tempdir().expect("tempdir");
    let config = config(
        base.path(),
        r#"
        [service.small]
        executable = "/usr/bin/small"
        process_limit = 3
        client_limit = 50
        [[service.small.unix_listener]]
        path = "small"
        [service.tiny]
        executable = "/usr/bin/tiny"
        process_limit = 1
        client_limit = 1
        [[service.tiny.unix_listener]]
        path = "tiny"
        "#,
    );
    let _small = open(&config, &config.services[0], &Accounts::default()).expect("small");
    let _tiny = open(&config, &config.services[1], &Accounts::default()).expect("tiny");
    // Linux queues one connection more than the backlog on a unix socket.
    let capacity = fill_queue(&base.path().join("small"));
    assert!(
        (150..=151).contains(&capacity),
        "queued {capacity} for 3 × 50"
    );
    let capacity = fill_queue(&base.path().join("tiny"));
    assert!(
        (128..=129).contains(&capacity),
        "queued {capacity}: the minimum is 128"
    );
}
