//! The client type of a listener: Dovecot's rule for the auth service.

/// What a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A unix stream socket.
    Unix,
    /// A fifo.
    Fifo,
    /// A TCP socket.
    Inet,
}

/// A listener, as the typing decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// An inet listener's name, or a socket's file name.
    pub name: String,
    /// What it is.
    pub kind: ListenerKind,
    /// The socket's full path.
    pub path: Option<String>,
    /// The socket's mode.
    pub mode: Option<u32>,
    /// The socket's owner.
    pub owner_uid: Option<u32>,
    /// The socket's group.
    pub owner_gid: Option<u32>,
    /// The type the configuration gives it; empty when unset.
    pub configured_type: String,
}

/// The peer of a connection on a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user.
    pub uid: Option<u32>,
    /// Its group.
    pub gid: Option<u32>,
}

/// A listener's client type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientType {
    /// The type's name.
    pub name: String,
    /// The only uid the peer may look up, when restricted.
    pub restricted_to_uid: Option<u32>,
}

/// The auth client types a listener name can select.
const AUTH_TYPES: [&str; 5] = ["login", "master", "userdb", "token", "tokenlogin"];

/// The part of `name` after its last `/` and then after its last `-`
/// (`auth-userdb` gives `userdb`, `login/login` gives `login`).
pub fn suffix(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.rsplit('-').next().unwrap_or(base)
}

/// Dovecot's auth client type: the configured type when there is one;
/// otherwise the suffix of the listener's name (the socket's file name, or
/// the inet listener's name) when it is `login`, `master`, `userdb`,
/// `token` or `tokenlogin`, and `client` for anything else.
///
/// A `userdb` socket of mode exactly 0666 lets anyone connect, so a peer
/// that is neither the socket's owner nor in its group may only look up
/// the user with its own uid.
pub fn auth(listener: &Listener, peer: Option<&Peer>) -> ClientType {
    let name = if listener.configured_type.is_empty() {
        let suffix = suffix(&listener.name);
        if AUTH_TYPES.contains(&suffix) {
            suffix
        } else {
            "client"
        }
    } else {
        listener.configured_type.as_str()
    };
    let world_open = listener.kind == ListenerKind::Unix && listener.mode == Some(0o666);
    let restricted_to_uid = match peer {
        Some(peer) if name == "userdb" && world_open => {
            let owner = peer.uid.is_some() && peer.uid == listener.owner_uid;
            let group = peer.gid.is_some() && peer.gid == listener.owner_gid;
            if owner || group { None } else { peer.uid }
        }
        _ => None,
    };
    ClientType {
        name: name.to_owned(),
        restricted_to_uid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(name: &str, mode: u32) -> Listener {
        Listener {
            name: name.to_owned(),
            kind: ListenerKind::Unix,
            path: Some(format!("/run/dovecot/{name}")),
            mode: Some(mode),
            owner_uid: Some(100),
            owner_gid: Some(100),
            configured_type: String::new(),
        }
    }

    #[test]
    fn the_suffix_after_the_last_dash_names_the_type() {
        assert_eq!(auth(&unix("anything-userdb", 0o600), None).name, "userdb");
        assert_eq!(auth(&unix("login/login", 0o666), None).name, "login");
        assert_eq!(auth(&unix("auth-master", 0o600), None).name, "master");
        assert_eq!(
            auth(&unix("token-login/tokenlogin", 0o666), None).name,
            "tokenlogin"
        );
        assert_eq!(auth(&unix("auth-client", 0o600), None).name, "client");
        assert_eq!(auth(&unix("auth-whatever", 0o600), None).name, "client");
    }

    #[test]
    fn a_configured_type_wins() {
        let mut listener = unix("auth-client", 0o600);
        listener.configured_type = "master".to_owned();
        assert_eq!(auth(&listener, None).name, "master");
    }

    #[test]
    fn a_world_open_userdb_socket_restricts_strangers_to_their_own_uid() {
        let stranger = Peer {
            uid: Some(1000),
            gid: Some(1000),
        };
        let owner = Peer {
            uid: Some(100),
            gid: Some(5),
        };
        let open = unix("auth-userdb", 0o666);
        assert_eq!(auth(&open, Some(&stranger)).restricted_to_uid, Some(1000));
        assert_eq!(auth(&open, Some(&owner)).restricted_to_uid, None);
        let closed = unix("auth-userdb", 0o660);
        assert_eq!(auth(&closed, Some(&stranger)).restricted_to_uid, None);
    }
}
