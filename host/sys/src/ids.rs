//! Users and groups by name, from the system's databases (NSS).
//!
//! The configuration names users and groups; the spawn plan and listeners
//! need numbers. Lookups happen when a configuration is put to use, never
//! while it is parsed.

use std::io;

use nix::unistd::{Gid, Group, Uid, User};

/// A user's id and primary group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The user's name.
    pub name: String,
    /// The user id.
    pub uid: Uid,
    /// The user's primary group.
    pub gid: Gid,
}

/// Looks up the user `name`; `None` if there is no such user.
pub fn user(name: &str) -> io::Result<Option<UserEntry>> {
    Ok(User::from_name(name)?.map(|user| UserEntry {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
    }))
}

/// Looks up the group `name`; `None` if there is no such group.
pub fn group(name: &str) -> io::Result<Option<Gid>> {
    Ok(Group::from_name(name)?.map(|group| group.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_nonsense_is_not() {
        let root = user("root").unwrap().unwrap();
        assert_eq!(root.uid, Uid::from_raw(0));
        assert_eq!(root.gid, Gid::from_raw(0));
        assert_eq!(group("root").unwrap(), Some(Gid::from_raw(0)));
        assert_eq!(user("no-such-user-in-warden-tests").unwrap(), None);
        assert_eq!(group("no-such-group-in-warden-tests").unwrap(), None);
    }
}
