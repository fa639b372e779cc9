//! Children die with their master: a `warden run` killed with SIGKILL
//! leaves no service process behind, whatever its interface, so a new
//! `warden run` on the same configuration serves at once. A native process
//! also leaves when its control channel closes, which no change of
//! credentials can undo.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use warden_child::protocol::{ConnectionInfo, FromService, MAX_MESSAGE, Peer, ToService, VERSION};
use warden_sys::{Exit, SpawnPlan};
use warden_tests::{LineClient, Running, echo, free_port, login, running, whoami};

/// How long the children of a killed master may take to go, and a new
/// master to serve.
const PROMPTLY: Duration = Duration::from_secs(1);

/// The three example services: echo (systemd), whoami (inetd) and login
/// (native), each on its port.
fn three_services(users: &Path, echo_port: u16, whoami_port: u16, login_port: u16) -> String {
    format!(
        r#"
[service.echo]
executable = "{echo}"
client_limit = 2
process_limit = 3
process_min_avail = 1

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {echo_port}

[service.whoami]
executable = "{whoami}"
interface = "inetd"
process_limit = 10

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {whoami_port}

[service.login]
executable = "{login} {users}"
interface = "warden"
type = "login"
client_limit = 2
process_limit = 2
# Not the built-in login plugin's dovenull in its chroot: the example is
# dynamically linked, and the test may not run as root.
user = ""
chroot = ""

[[service.login.inet_listener]]
name = "login"
address = "127.0.0.1"
port = {login_port}
"#,
        echo = echo().display(),
        whoami = whoami().display(),
        login = login().display(),
        users = users.display(),
    )
}

/// Connects to `port` and reads the greeting.
fn greeted(port: u16) -> (LineClient, String) {
    let mut client = LineClient::connect(port).expect("connect");
    let greeting = client.line().expect("read").expect("a greeting");
    (client, greeting)
}

/// Whether process `pid` has ended: it is gone, or a zombie no one has
/// collected yet (it holds no descriptor any more).
fn ended(pid: i32) -> bool {
    !running(pid)
}

/// Whether anything listens on 127.0.0.1:`port`: a second listener could
/// not be bound there.
fn listened_on(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn a_killed_master_leaves_no_process_behind_and_a_new_one_serves_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").expect("write the users");
    let ports @ [echo_port, whoami_port, login_port] = [free_port(), free_port(), free_port()];
    let mut warden = Running::start(&three_services(&users, echo_port, whoami_port, login_port));

    // A client busy with each service: echo mid-session, a whoami client
    // kept open, a login client logged in.
    let mut echo_client = LineClient::connect(echo_port).expect("connect to echo");
    echo_client.echo_pid();
    echo_client.send("ping").expect("send");
    assert_eq!(echo_client.line().expect("read").as_deref(), Some("ping"));
    let (mut whoami_client, greeting) = greeted(whoami_port);
    assert!(greeting.starts_with("you are 127.0.0.1:"), "{greeting}");
    let (mut login_client, greeting) = greeted(login_port);
    assert!(
        greeting.starts_with("* OK warden-login ready"),
        "{greeting}"
    );
    login_client.send("LOGIN alice secret").expect("send");
    assert_eq!(
        login_client.line().expect("read").as_deref(),
        Some("OK logged in")
    );

    let mut children = Vec::new();
    for service in ["echo", "whoami", "login"] {
        let pids = warden.pids(service);
        assert!(!pids.is_empty(), "service {service} has no process");
        children.extend(pids.into_iter().map(|pid| (service, pid)));
    }

    warden.kill();
    let killed = Instant::now();
    while !children.iter().all(|&(_, pid)| ended(pid)) && killed.elapsed() < PROMPTLY {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<_> = children.iter().filter(|(_, pid)| !ended(*pid)).collect();
    assert!(
        left.is_empty(),
        "processes outlived their master by {:?}: {left:?}\n{}",
        killed.elapsed(),
        warden.log()
    );
    eprintln!(
        "every process was gone {:?} after the master",
        killed.elapsed()
    );
    // A process that started after the pids were read (a busy echo's
    // next one) holds its service's listener too, and ends as promptly.
    for port in ports {
        while listened_on(port) && killed.elapsed() < PROMPTLY {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!listened_on(port), "something still listens on {port}");
    }
    assert!(echo_client.closed(), "the echo client is still connected");
    assert!(
        whoami_client.closed(),
        "the whoami client is still connected"
    );
    assert!(login_client.closed(), "the login client is still connected");

    let started = Instant::now();
    warden.start_again();
    let (_, greeting) = greeted(echo_port);
    assert!(greeting.starts_with("hello from "), "{greeting}");
    let (_, greeting) = greeted(whoami_port);
    assert!(greeting.starts_with("you are 127.0.0.1:"), "{greeting}");
    let (_, greeting) = greeted(login_port);
    assert!(
        greeting.starts_with("* OK warden-login ready"),
        "{greeting}"
    );
    eprintln!(
        "a new master served all three services in {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < PROMPTLY,
        "the new master took {:?} to serve all three services\n{}",
        started.elapsed(),
        warden.log()
    );
}

/// Receives one message from the process on `channel`.
fn from_service(channel: &OwnedFd) -> FromService {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let received = warden_sys::fdpass::recv(std::os::fd::AsFd::as_fd(channel), &mut buffer)
        .expect("receive from the process");
    FromService::parse(buffer.get(..received.len).unwrap_or_default()).expect("a message")
}

/// Sends `message` with `fds` to the process on `channel`.
fn to_service(channel: &OwnedFd, message: &ToService, fds: &[std::os::fd::BorrowedFd<'_>]) {
    warden_sys::fdpass::send(std::os::fd::AsFd::as_fd(channel), &message.encode(), fds)
        .expect("send to the process");
}

#[test]
fn a_native_process_leaves_at_once_when_its_channel_closes_even_while_serving() {
    // Here the test plays warden, and stays alive: only the end of file on
    // the channel tells the process that its master is gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").expect("write the users");
    let (master, process): (OwnedFd, OwnedFd) = nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("a channel");
    let mut plan = SpawnPlan::new("login", [login().as_os_str(), users.as_os_str()]);
    plan.env("WARDEN_CONTROL_FD", "3")
        .env("WARDEN_PROTOCOL", VERSION.to_string())
        .fd(process, 3);
    let child = plan.spawn().expect("start the login service");

    to_service(
        &master,
        &ToService::Hello {
            version: VERSION,
            service: "login".to_owned(),
            client_limit: 2,
            service_count: None,
        },
        &[],
    );
    assert_eq!(
        from_service(&master),
        FromService::Ready { version: VERSION }
    );

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut client = LineClient::connect(port).expect("connect");
    let (socket, peer) = listener.accept().expect("accept");
    let connection = ToService::Connection(ConnectionInfo {
        id: 1,
        listener: "login".to_owned(),
        client_type: "login".to_owned(),
        restricted_to_uid: None,
        ssl: false,
        peer: Peer {
            address: Some(peer.to_string()),
            ..Peer::default()
        },
    });
    to_service(&master, &connection, &[std::os::fd::AsFd::as_fd(&socket)]);
    drop::<TcpStream>(socket);
    let greeting = client.line().expect("read").expect("a greeting");
    assert!(
        greeting.starts_with("* OK warden-login ready"),
        "{greeting}"
    );

    drop(master);
    let closed = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("look at the process") {
            break exit;
        }
        assert!(
            closed.elapsed() < PROMPTLY,
            "the process still serves its client {:?} after its channel closed",
            closed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(exit, Exit::Code(0));
    assert!(client.closed(), "the client is still connected");
}
