//! The built-in plugins, one per documented Dovecot service, run through
//! the real runtime: the defaults each supplies and the decisions each
//! makes, each test proving the rule of the service page it names.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use warden_policy::stats::{Event, PluginMetrics, Value};
use warden_policy::{
    BUILTINS, Budget, ConnectionView, Defaults, ExitCause, ExitView, IdleAction, Lifecycle,
    ListenerKind, ListenerView, Origin, PeerView, Plugins, Policy, ProcessView, Runtime,
    ServiceKind, ServiceView, Supplied,
};

/// Every built-in, loaded once for all tests, as the master loads them.
fn builtins() -> MutexGuard<'static, Plugins> {
    static PLUGINS: OnceLock<Mutex<Plugins>> = OnceLock::new();
    PLUGINS
        .get_or_init(|| {
            let runtime = Runtime::new(None).expect("the runtime");
            let loaded = BUILTINS
                .iter()
                .map(|(name, bytes)| {
                    runtime
                        .load(bytes, Origin::Builtin, Budget::default())
                        .unwrap_or_else(|e| panic!("the built-in {name}: {e}"))
                })
                .collect();
            Mutex::new(Plugins::new(loaded))
        })
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn defaults(service: &str) -> Defaults {
    builtins()
        .defaults(service, &[], 8)
        .unwrap_or_else(|e| panic!("the defaults of {service}: {e}"))
}

/// The value `supplied` holds, checking that `plugin` supplied it.
fn by<T: Clone>(supplied: Option<&Supplied<T>>, plugin: &str) -> T {
    let supplied = supplied.unwrap_or_else(|| panic!("{plugin} supplies nothing here"));
    assert_eq!(supplied.plugin, plugin);
    supplied.value.clone()
}

fn unix_paths(defaults: &Defaults) -> Vec<(String, u32, String)> {
    defaults
        .unix_listeners
        .as_ref()
        .map(|l| {
            l.value
                .iter()
                .map(|l| (l.path.clone(), l.mode, l.user.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn view(name: &'static str, kind: ServiceKind, process_limit: u32) -> ServiceView<'static> {
    ServiceView {
        name,
        kind,
        protocol: "",
        policies: &[],
        service_count: None,
        client_limit: 1000,
        process_limit,
        process_min_avail: 0,
        idle_kill_ms: Some(60_000),
        per_source_limit: None,
        per_source_rate: None,
    }
}

fn process(pid: u32, clients: u32) -> ProcessView {
    ProcessView {
        pid,
        started_ms: 0,
        ready: true,
        clients: Some(clients),
        idle_since_ms: (clients == 0).then_some(0),
        asked_to_exit_ms: None,
        retired: false,
    }
}

/// A singleton's scaling: one at startup or when asked for, never two,
/// even with a configuration that allows more.
fn assert_singleton(name: &'static str, always: bool) {
    let mut plugins = builtins();
    let mut service = view(name, ServiceKind::Default, 5);
    service.process_min_avail = 3;
    assert_eq!(plugins.scaling(&service, &[], true, false), 1, "{name}");
    assert_eq!(
        plugins.scaling(&service, &[process(1, 1000)], false, false),
        0,
        "{name} never starts a second process"
    );
    service.process_min_avail = 0;
    let expected = u32::from(always);
    assert_eq!(
        plugins.scaling(&service, &[], false, false),
        expected,
        "{name}"
    );
}

/// A process that served its connection and exited cleanly is replaced at
/// once: no throttle.
fn assert_recycles(name: &'static str) {
    let exit = ExitView {
        pid: 7,
        cause: ExitCause::Code(0),
        age_ms: 40,
        was_ready: true,
        was_asked: false,
        service_proven: true,
        failures_in_last_second: 0,
        last_throttle_ms: 0,
    };
    let mut service = view(name, ServiceKind::Default, 100);
    service.service_count = Some(1);
    assert_eq!(
        builtins().lifecycle(&service, &exit),
        Lifecycle::Continue,
        "{name}"
    );
}

#[test]
fn every_service_of_the_page_has_its_built_in() {
    let names: Vec<&str> = BUILTINS.iter().map(|(name, _)| *name).collect();
    for expected in [
        "admission",
        "anvil",
        "auth",
        "auth-worker",
        "config",
        "dict",
        "director",
        "dns-client",
        "doveadm",
        "dovecot",
        "indexer",
        "indexer-worker",
        "ipc",
        "lmtp",
        "log",
        "login",
        "mail",
        "ssl-params",
        "stats",
    ] {
        assert!(names.contains(&expected), "no built-in {expected}");
    }
}

#[test]
fn anvil_is_one_resident_process_that_is_never_idle_killed() {
    // seed: svc.anvil
    let d = defaults("anvil");
    assert_eq!(by(d.kind.as_ref(), "anvil"), ServiceKind::Anvil);
    assert_eq!(by(d.process_limit.as_ref(), "anvil"), 1);
    assert_eq!(by(d.chroot.as_ref(), "anvil"), "empty");
    assert_eq!(by(d.user.as_ref(), "anvil"), "$default_internal_user");
    assert_eq!(by(d.idle_kill_ms.as_ref(), "anvil"), 0, "0 is never");
    assert_singleton("anvil", true);
    let idle: Vec<ProcessView> = vec![process(1, 0)];
    assert_eq!(
        builtins().idle(&view("anvil", ServiceKind::Anvil, 1), &idle, 1, 1 << 40),
        []
    );
}

#[test]
fn auth_is_one_process_of_the_internal_user() {
    // seed: svc.auth
    let d = defaults("auth");
    assert_eq!(by(d.process_limit.as_ref(), "auth"), 1);
    assert_eq!(by(d.user.as_ref(), "auth"), "$default_internal_user");
    let paths = unix_paths(&d);
    for path in [
        "login/login",
        "auth-login",
        "auth-client",
        "auth-userdb",
        "auth-master",
    ] {
        assert!(paths.iter().any(|(p, _, _)| p == path), "no {path}");
    }
    assert!(paths.contains(&(
        "auth-userdb".to_owned(),
        0o666,
        "$default_internal_user".to_owned()
    )));
    assert_singleton("auth", false);
}

fn listener(name: &str, kind: ListenerKind, mode: Option<u32>) -> ListenerView {
    ListenerView {
        name: name.to_owned(),
        kind,
        path: (kind == ListenerKind::Unix).then(|| format!("/run/dovecot/{name}")),
        mode,
        owner_uid: Some(100),
        owner_gid: Some(100),
        configured_type: String::new(),
        ssl: false,
        haproxy: false,
    }
}

#[test]
fn auth_types_a_listener_by_the_name_after_its_last_dash() {
    // seed: svc.auth
    let mut plugins = builtins();
    let auth = view("auth", ServiceKind::Default, 1);
    let mut type_of = |name: &str, kind| {
        plugins
            .typing(&auth, &listener(name, kind, Some(0o600)), None)
            .name
    };
    assert_eq!(type_of("anything-userdb", ListenerKind::Unix), "userdb");
    assert_eq!(type_of("auth-master", ListenerKind::Unix), "master");
    assert_eq!(type_of("login", ListenerKind::Unix), "login");
    assert_eq!(type_of("tokenlogin", ListenerKind::Unix), "tokenlogin");
    assert_eq!(type_of("auth-client", ListenerKind::Unix), "client");
    assert_eq!(type_of("auth-nonsense", ListenerKind::Unix), "client");
    assert_eq!(type_of("imap", ListenerKind::Inet), "client");
    assert_eq!(type_of("remote-userdb", ListenerKind::Inet), "userdb");
}

#[test]
fn a_world_open_userdb_socket_restricts_a_stranger_to_its_own_uid() {
    // seed: svc.auth
    let mut plugins = builtins();
    let auth = view("auth", ServiceKind::Default, 1);
    let open = listener("auth-userdb", ListenerKind::Unix, Some(0o666));
    let stranger = PeerView {
        uid: Some(1000),
        gid: Some(1000),
        ..PeerView::default()
    };
    let owner = PeerView {
        uid: Some(100),
        gid: Some(1000),
        ..PeerView::default()
    };
    let typed = plugins.typing(&auth, &open, Some(&stranger));
    assert_eq!(
        (typed.name.as_str(), typed.restricted_to_uid),
        ("userdb", Some(1000))
    );
    assert_eq!(
        plugins.typing(&auth, &open, Some(&owner)).restricted_to_uid,
        None
    );
    let closed = listener("auth-userdb", ListenerKind::Unix, Some(0o660));
    assert_eq!(
        plugins
            .typing(&auth, &closed, Some(&stranger))
            .restricted_to_uid,
        None
    );
}

#[test]
fn auth_worker_serves_one_lookup_per_process_as_root() {
    // seed: svc.auth-worker
    let d = defaults("auth-worker");
    assert_eq!(by(d.kind.as_ref(), "auth-worker"), ServiceKind::Worker);
    assert_eq!(by(d.client_limit.as_ref(), "auth-worker"), 1);
    assert_eq!(by(d.service_count.as_ref(), "auth-worker"), 1);
    assert_eq!(by(d.user.as_ref(), "auth-worker"), "", "root");
    assert!(
        by(d.process_limit.as_ref(), "auth-worker") > 30,
        "a bit above auth_worker_max_count's default of 30"
    );
    assert_recycles("auth-worker");
}

#[test]
fn config_runs_as_root_behind_a_root_only_socket() {
    // seed: svc.config
    let d = defaults("config");
    assert_eq!(by(d.kind.as_ref(), "config"), ServiceKind::Config);
    assert_eq!(by(d.user.as_ref(), "config"), "");
    assert_eq!(
        unix_paths(&d),
        [("config".to_owned(), 0o600, String::new())]
    );
}

#[test]
fn dict_is_synchronous_and_dict_async_follows_the_cpus() {
    // seed: svc.dict
    let d = defaults("dict");
    assert_eq!(by(d.client_limit.as_ref(), "dict"), 1);
    assert_eq!(by(d.user.as_ref(), "dict"), "$default_internal_user");
    assert_eq!(unix_paths(&d), [("dict".to_owned(), 0o600, String::new())]);
    let a = builtins()
        .defaults("dict-async", &[], 6)
        .expect("dict-async's defaults");
    assert_eq!(by(a.process_limit.as_ref(), "dict"), 6);
    assert_eq!(
        a.client_limit, None,
        "dict-async keeps default_client_limit"
    );
    assert_eq!(
        unix_paths(&a),
        [("dict-async".to_owned(), 0o600, String::new())]
    );
}

#[test]
fn director_is_one_unchrooted_process() {
    // seed: svc.director
    let d = defaults("director");
    assert_eq!(by(d.process_limit.as_ref(), "director"), 1);
    assert_eq!(by(d.user.as_ref(), "director"), "$default_internal_user");
    assert_eq!(by(d.chroot.as_ref(), "director"), "", "no chroot");
    assert_singleton("director", false);
}

#[test]
fn dns_client_does_one_lookup_per_process_and_is_not_chrooted() {
    // seed: svc.dns_client
    for name in ["dns_client", "dns-client"] {
        let d = defaults(name);
        assert_eq!(by(d.client_limit.as_ref(), "dns-client"), 1);
        assert_eq!(by(d.user.as_ref(), "dns-client"), "$default_internal_user");
        assert_eq!(d.chroot, None, "a chroot must hold etc/resolv.conf");
    }
}

#[test]
fn doveadm_runs_one_command_per_process_as_root() {
    // seed: svc.doveadm
    let d = defaults("doveadm");
    assert_eq!(by(d.client_limit.as_ref(), "doveadm"), 1);
    assert_eq!(by(d.service_count.as_ref(), "doveadm"), 1);
    assert_eq!(by(d.user.as_ref(), "doveadm"), "");
    assert_recycles("doveadm");
}

#[test]
fn mail_services_serve_one_client_per_process_up_to_1024() {
    // seed: svc.mail
    for (name, protocol) in [
        ("imap", "imap"),
        ("pop3", "pop3"),
        ("submission", "submission"),
        ("managesieve", "sieve"),
    ] {
        let d = defaults(name);
        assert_eq!(by(d.client_limit.as_ref(), "mail"), 1, "{name}");
        assert_eq!(by(d.service_count.as_ref(), "mail"), 1, "{name}");
        assert_eq!(by(d.process_limit.as_ref(), "mail"), 1024, "{name}");
        assert_eq!(by(d.protocol.as_ref(), "mail"), protocol, "{name}");
    }
    assert_recycles("imap");
}

#[test]
fn login_services_are_unprivileged_chrooted_logins() {
    // seed: svc.login
    for (name, ports) in [
        ("imap-login", [143, 993]),
        ("pop3-login", [110, 995]),
        ("submission-login", [587, 465]),
    ] {
        let d = defaults(name);
        assert_eq!(by(d.kind.as_ref(), "login"), ServiceKind::Login, "{name}");
        assert_eq!(by(d.user.as_ref(), "login"), "$default_login_user");
        assert_eq!(by(d.chroot.as_ref(), "login"), "login");
        let listeners = by(d.inet_listeners.as_ref(), "login");
        let found: Vec<(u16, bool)> = listeners.iter().map(|l| (l.port, l.ssl)).collect();
        assert_eq!(found, [(ports[0], false), (ports[1], true)], "{name}");
    }
    let sieve = defaults("managesieve-login");
    assert_eq!(by(sieve.kind.as_ref(), "login"), ServiceKind::Login);
}

fn connection(id: u64, accepted_ms: u64) -> ConnectionView {
    ConnectionView {
        id,
        listener: "imap".to_owned(),
        peer: PeerView::default(),
        accepted_ms,
        authenticated: false,
        pid: 1,
    }
}

#[test]
fn a_full_login_service_evicts_its_oldest_connections_not_logged_in() {
    // seed: svc.login
    let mut plugins = builtins();
    let login = view("imap-login", ServiceKind::Login, 2);
    let candidates = [connection(5, 300), connection(3, 100), connection(4, 200)];
    assert_eq!(plugins.evict(&login, &candidates, 1, 1_000), [3]);
    assert_eq!(plugins.evict(&login, &candidates, 2, 1_000), [3, 4]);
    let mut logged_in = candidates;
    logged_in[1].authenticated = true;
    assert_eq!(
        plugins.evict(&login, &logged_in, 1, 1_000),
        [4],
        "a connection that logged in is never evicted"
    );
}

#[test]
fn login_idle_kill_never_leaves_fewer_than_process_min_avail() {
    // seed: svc.login
    let mut plugins = builtins();
    let mut login = view("imap-login", ServiceKind::Login, 10);
    login.process_min_avail = 2;
    let idle: Vec<ProcessView> = (1..=3).map(|pid| process(pid, 0)).collect();
    let asked = plugins.idle(&login, &idle, 3, 120_000);
    assert_eq!(asked, [IdleAction::AskToExit(1)]);
    assert_eq!(plugins.idle(&login, &idle[..2], 2, 120_000), []);
}

#[test]
fn indexer_is_one_process_of_the_internal_user() {
    // seed: svc.indexer
    let d = defaults("indexer");
    assert_eq!(by(d.process_limit.as_ref(), "indexer"), 1);
    assert_eq!(by(d.user.as_ref(), "indexer"), "$default_internal_user");
    assert_singleton("indexer", false);
}

#[test]
fn indexer_worker_is_ten_synchronous_root_workers() {
    // seed: svc.indexer-worker
    let d = defaults("indexer-worker");
    assert_eq!(by(d.client_limit.as_ref(), "indexer-worker"), 1);
    assert_eq!(by(d.process_limit.as_ref(), "indexer-worker"), 10);
    assert_eq!(by(d.user.as_ref(), "indexer-worker"), "");
    assert_recycles("indexer-worker");
}

#[test]
fn ipc_is_one_hub_chrooted_to_empty() {
    // seed: svc.ipc
    let d = defaults("ipc");
    assert_eq!(by(d.process_limit.as_ref(), "ipc"), 1);
    assert_eq!(by(d.chroot.as_ref(), "ipc"), "empty");
    assert_eq!(by(d.user.as_ref(), "ipc"), "$default_internal_user");
    assert_singleton("ipc", false);
}

#[test]
fn lmtp_delivers_one_client_per_process_as_root() {
    // seed: svc.lmtp
    let d = defaults("lmtp");
    assert_eq!(by(d.client_limit.as_ref(), "lmtp"), 1);
    assert_eq!(by(d.user.as_ref(), "lmtp"), "");
    assert_eq!(by(d.protocol.as_ref(), "lmtp"), "lmtp");
    assert_recycles("lmtp");
}

#[test]
fn log_is_one_root_process_that_is_always_there() {
    // seed: svc.log
    let d = defaults("log");
    assert_eq!(by(d.kind.as_ref(), "log"), ServiceKind::Log);
    assert_eq!(by(d.process_limit.as_ref(), "log"), 1);
    assert_eq!(by(d.user.as_ref(), "log"), "");
    assert_singleton("log", true);
}

#[test]
fn ssl_params_is_a_startup_service() {
    // seed: svc.ssl-params
    let d = defaults("ssl-params");
    assert_eq!(by(d.kind.as_ref(), "ssl-params"), ServiceKind::Startup);
    let mut plugins = builtins();
    let service = view("ssl-params", ServiceKind::Startup, 100);
    assert_eq!(
        plugins.scaling(&service, &[], true, false),
        1,
        "one at startup"
    );
    assert_eq!(
        plugins.scaling(&service, &[], false, false),
        0,
        "none later"
    );
}

#[test]
fn stats_is_like_anvil() {
    // seed: svc.stats
    let d = defaults("stats");
    assert_eq!(by(d.process_limit.as_ref(), "stats"), 1);
    assert_eq!(by(d.idle_kill_ms.as_ref(), "stats"), 0);
    assert_singleton("stats", true);
    assert_eq!(
        builtins().idle(
            &view("stats", ServiceKind::Default, 1),
            &[process(1, 0)],
            1,
            1 << 40
        ),
        []
    );
}

#[test]
fn a_service_nobody_documents_gets_no_defaults() {
    assert_eq!(defaults("echo"), Defaults::default());
}

#[test]
fn a_builtin_that_observed_nothing_since_its_last_report_is_not_asked_again() {
    let mut plugins = builtins();
    // A service no other test tells the shared plugins about.
    let service = "managesieve-login";
    let calls = |plugins: &Plugins| {
        plugins
            .plugins()
            .iter()
            .find(|p| p.identity().name == "login")
            .map(|p| p.stats().calls)
            .expect("the login plugin")
    };
    let waiting = |report: &[PluginMetrics]| {
        report
            .iter()
            .find(|r| r.plugin == "login")
            .and_then(|login| {
                login
                    .metrics
                    .iter()
                    .find(|(m, _)| m.name == "connections_waiting")
            })
            .and_then(|(_, samples)| samples.iter().find(|s| s.labels == [service]))
            .map(|s| s.value)
    };
    plugins.observe(service, &[], Event::Accepted(1), 0);
    let first = plugins.report(0);
    let before = calls(&plugins);
    let again = plugins.report(1_000);
    assert_eq!(calls(&plugins), before, "asked again with nothing new");
    assert_eq!(waiting(&again), waiting(&first));

    plugins.observe(service, &[], Event::Closed(1), 2_000);
    let after = plugins.report(3_000);
    assert_eq!(
        calls(&plugins),
        before + 2,
        "the observation and a fresh report"
    );
    assert_ne!(waiting(&after), waiting(&first), "the report is fresh");
}

#[test]
fn login_reports_connections_waiting_evicted_and_logged_in() {
    let mut plugins = builtins();
    let service = "pop3-login";
    for id in 1..=4 {
        plugins.observe(service, &[], Event::Accepted(id), 0);
    }
    plugins.observe(service, &[], Event::Authenticated(1), 0);
    plugins.observe(service, &[], Event::Evicted(2), 0);
    let report = plugins.report(0);
    let login = report
        .iter()
        .find(|r| r.plugin == "login")
        .expect("the login plugin reports");
    let value = |metric: &str| {
        login
            .metrics
            .iter()
            .find(|(m, _)| m.name == metric)
            .and_then(|(_, samples)| samples.iter().find(|s| s.labels == [service]))
            .map(|s| s.value)
    };
    assert_eq!(value("connections_waiting"), Some(Value::Plain(2.0)));
    assert_eq!(value("connections_evicted"), Some(Value::Plain(1.0)));
    assert_eq!(value("connections_logged_in"), Some(Value::Plain(1.0)));
    let anvil = report
        .iter()
        .find(|r| r.plugin == "anvil")
        .expect("anvil reports");
    assert!(
        anvil
            .metrics
            .iter()
            .any(|(m, _)| m.name == "processes_started")
    );
}
