//! Checks that compare settings with each other.
//!
//! Each value has already been read and checked on its own by `load`; what
//! remains are combinations that cannot work: limits that contradict each
//! other, two listeners on one address, an interface asked to do what it
//! cannot. Every check points at the setting to change and says how.

use std::ops::Range;
use std::path::Path;

use super::value::MIN_VSZ_LIMIT;
use super::{Config, Interface, Origin, Problem, Service, ServiceKind, Setting, VszLimit};

/// Pushes a problem for every combination of settings in `config` that
/// cannot work.
pub(super) fn validate(config: &Config, problems: &mut Vec<Problem>) {
    let global_vsz = &config.globals.default_vsz_limit;
    check_vsz_limit(
        "default_vsz_limit",
        "default_vsz_limit",
        global_vsz,
        0..0,
        problems,
    );
    for service in &config.services {
        check_service(service, problems);
    }
    check_duplicate_paths(config, problems);
    check_duplicate_ports(config, problems);
}

/// The span of `setting` if the file wrote it, else `fallback` (the table
/// the setting belongs to).
fn span_of<T>(setting: &Setting<T>, fallback: &Range<usize>) -> Range<usize> {
    setting.origin.span().unwrap_or_else(|| fallback.clone())
}

fn check_vsz_limit(
    key: &str,
    name: &str,
    setting: &Setting<VszLimit>,
    fallback: Range<usize>,
    problems: &mut Vec<Problem>,
) {
    // A limit inherited from default_vsz_limit is reported there, once.
    if !setting.is_from_file() && !matches!(setting.origin, Origin::Plugin { .. }) {
        return;
    }
    if let VszLimit::Bytes(size) = setting.value
        && size.0 < MIN_VSZ_LIMIT
    {
        problems.push(Problem::new(
            key,
            span_of(setting, &fallback),
            format!(
                "{name} = {size} is too low for any process to start; write at least \"1M\", or \"unlimited\" for no limit"
            ),
        ));
    }
}

fn check_service(service: &Service, problems: &mut Vec<Problem>) {
    let name = &service.name;
    let at = |setting_span: Range<usize>, key: &str, message: String| {
        Problem::new(format!("service.{name}.{key}"), setting_span, message)
    };
    let header = &service.span;

    // Dovecot refuses this combination: with privileges dropped before exec,
    // the program would have to be found inside the chroot.
    if service.drop_priv_before_exec.value && service.chroot.value.is_some() {
        problems.push(at(
            span_of(&service.drop_priv_before_exec, header),
            "drop_priv_before_exec",
            "drop_priv_before_exec cannot be combined with chroot; set drop_priv_before_exec = false, or chroot = \"\"".into(),
        ));
    }

    let min_avail = service.process_min_avail.value;
    let limit = service.process_limit.value;
    if min_avail > limit {
        problems.push(at(
            span_of(&service.process_min_avail, header),
            "process_min_avail",
            format!(
                "process_min_avail ({min_avail}) is above process_limit ({limit}); lower process_min_avail or raise process_limit"
            ),
        ));
    }

    check_vsz_limit(
        &format!("service.{name}.vsz_limit"),
        "vsz_limit",
        &service.vsz_limit,
        header.clone(),
        problems,
    );

    let listeners =
        service.unix_listeners.len() + service.fifo_listeners.len() + service.inet_listeners.len();
    match service.interface.value {
        Interface::Inetd => {
            let clients = service.client_limit.value;
            if clients > 1 {
                problems.push(at(
                    span_of(&service.client_limit, header),
                    "client_limit",
                    format!(
                        "interface inetd gives each process one connection, so client_limit = {clients} cannot hold; remove client_limit, or use interface = \"systemd\" or \"warden\""
                    ),
                ));
            }
            if service.kind.value == ServiceKind::Startup {
                problems.push(at(
                    span_of(&service.kind, header),
                    "type",
                    "interface inetd starts a process only for a connection, so type = \"startup\" cannot hold; use interface = \"systemd\"".into(),
                ));
            }
            if listeners == 0 {
                problems.push(at(
                    span_of(&service.interface, header),
                    "interface",
                    "interface inetd starts a process per connection, but this service has no listener; add an inet_listener or unix_listener".into(),
                ));
            }
        }
        Interface::Warden | Interface::Systemd | Interface::Dovecot => {}
    }
    if matches!(
        service.interface.value,
        Interface::Inetd | Interface::Warden
    ) {
        for (index, fifo) in service.fifo_listeners.iter().enumerate() {
            problems.push(Problem::new(
                format!("service.{name}.fifo_listener[{index}]"),
                fifo.span.clone(),
                format!(
                    "interface {} accepts connections, and a fifo has none to accept; use a unix_listener, or interface = \"systemd\"",
                    service.interface.value.as_str()
                ),
            ));
        }
    }

    let mut names: Vec<(&str, &Range<usize>)> = Vec::new();
    for (index, listener) in service.inet_listeners.iter().enumerate() {
        let listener_name = listener.name.value.as_str();
        if listener_name.is_empty() {
            continue;
        }
        if names.iter().any(|(seen, _)| *seen == listener_name) {
            problems.push(Problem::new(
                format!("service.{name}.inet_listener[{index}].name"),
                span_of(&listener.name, &listener.span),
                format!(
                    "service {name} has two inet listeners named `{listener_name}`; give each a name of its own"
                ),
            ));
        } else {
            names.push((listener_name, &listener.span));
        }
    }
}

/// Two enabled unix or fifo listeners, or a listener and the control socket,
/// on one path.
fn check_duplicate_paths(config: &Config, problems: &mut Vec<Problem>) {
    let mut seen: Vec<(&Path, String)> = vec![(
        config.globals.control_socket.value.as_path(),
        "the control socket".to_owned(),
    )];
    for service in &config.services {
        let kinds = [
            ("unix_listener", &service.unix_listeners),
            ("fifo_listener", &service.fifo_listeners),
        ];
        for (kind, listeners) in kinds {
            for (index, listener) in listeners.iter().enumerate() {
                let path = listener.path.value.as_path();
                if listener.mode.value.disables() || path.as_os_str().is_empty() {
                    continue;
                }
                let owner = format!("service.{}.{kind}[{index}]", service.name);
                if let Some((_, first)) = seen.iter().find(|(other, _)| *other == path) {
                    problems.push(Problem::new(
                        format!("{owner}.path"),
                        span_of(&listener.path, &listener.span),
                        format!(
                            "duplicate listener: {} is also used by {first}; give this listener another path",
                            path.display()
                        ),
                    ));
                } else {
                    seen.push((path, owner));
                }
            }
        }
    }
}

/// Two enabled inet listeners whose addresses overlap on one port.
fn check_duplicate_ports(config: &Config, problems: &mut Vec<Problem>) {
    let mut seen = Vec::new();
    for service in &config.services {
        for (index, listener) in service.inet_listeners.iter().enumerate() {
            let port = listener.port.value;
            if port == 0 {
                continue;
            }
            let owner = format!("service.{}.inet_listener[{index}]", service.name);
            for &address in &listener.address.value {
                let clash = seen.iter().find(|(other_port, other_address, _)| {
                    *other_port == port && address.overlaps(*other_address)
                });
                match clash {
                    Some((_, other_address, first)) => problems.push(Problem::new(
                        format!("{owner}.port"),
                        span_of(&listener.port, &listener.span),
                        format!(
                            "duplicate listener: {address} port {port} overlaps {other_address} port {port} of {first}; change the port or the address"
                        ),
                    )),
                    None => seen.push((port, address, owner.clone())),
                }
            }
        }
    }
}
