//! Passing descriptors with a small message over a unix socket.
//!
//! One call sends one message: up to [`MAX_MESSAGE`] bytes and up to
//! [`MAX_FDS`] descriptors as `SCM_RIGHTS`. Received descriptors are
//! close-on-exec from the moment they exist (`MSG_CMSG_CLOEXEC`). A message
//! or a control message that did not fit is an error, and any descriptor
//! that did arrive with it is closed, so a peer cannot make the receiver
//! leak descriptors or act on half a message. Message boundaries hold on
//! `SOCK_SEQPACKET` and `SOCK_DGRAM` sockets; that is what the callers use.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, getsockopt, recvmsg, sendmsg, sockopt,
};
use nix::unistd::{Gid, Pid, Uid};

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 8;

/// The largest message body, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// The most descriptors the kernel passes in one message (`SCM_MAX_FD`).
/// Control space for this many is reserved, so a peer that sends more than
/// [`MAX_FDS`] cannot make the control data be cut, which would leave the
/// descriptors that did arrive impossible to find and close.
const KERNEL_MAX_FDS: usize = 253;

/// Why a message could not be received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The socket failed.
    #[error("receiving a message failed")]
    Io(#[from] io::Error),
    /// The message was longer than the buffer (at most [`MAX_MESSAGE`]).
    #[error("the message was longer than {limit} bytes and was cut; it was discarded")]
    TooLong {
        /// The buffer's size.
        limit: usize,
    },
    /// More descriptors came than [`MAX_FDS`], or the control data was cut.
    #[error(
        "the message carried more than {MAX_FDS} descriptors or cut control data; it was discarded"
    )]
    TooManyFds,
}

/// A message and the descriptors that came with it.
#[derive(Debug)]
pub struct Received {
    /// How many bytes of the buffer the message filled; 0 with no
    /// descriptors means the peer closed the connection.
    pub len: usize,
    /// The descriptors, close-on-exec, in the order they were sent.
    pub fds: Vec<OwnedFd>,
}

/// Sends `message` and `fds` as one message on `socket`.
pub fn send(socket: BorrowedFd<'_>, message: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if message.len() > MAX_MESSAGE || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {} bytes with {} descriptors exceeds {MAX_MESSAGE} bytes or {MAX_FDS} descriptors",
                message.len(),
                fds.len()
            ),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(message)];
    let sent = sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", message.len()),
        ));
    }
    Ok(())
}

/// Receives one message into `buffer` (at most [`MAX_MESSAGE`] bytes are
/// used) with its descriptors.
pub fn recv(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> Result<Received, RecvError> {
    let limit = buffer.len().min(MAX_MESSAGE);
    let body = buffer.get_mut(..limit).unwrap_or_default();
    let mut iov = [IoSliceMut::new(body)];
    let mut space = nix::cmsg_space!([RawFd; KERNEL_MAX_FDS]);
    let message = recvmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel installed this descriptor in our table
                // for this message; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    // Dropping `fds` closes whatever arrived with a bad message.
    if message.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > MAX_FDS {
        return Err(RecvError::TooManyFds);
    }
    if message.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(RecvError::TooLong { limit });
    }
    Ok(Received {
        len: message.bytes,
        fds,
    })
}

/// Who is at the other end of a unix socket, as the kernel saw it when the
/// connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The peer's process id.
    pub pid: Pid,
    /// The peer's user.
    pub uid: Uid,
    /// The peer's group.
    pub gid: Gid,
}

/// The credentials of the peer of a connected unix socket (`SO_PEERCRED`).
pub fn peer_credentials(socket: impl AsFd) -> io::Result<Credentials> {
    let credentials = getsockopt(&socket, sockopt::PeerCredentials)?;
    Ok(Credentials {
        pid: Pid::from_raw(credentials.pid()),
        uid: Uid::from_raw(credentials.uid()),
        gid: Gid::from_raw(credentials.gid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::io::{Read, Write};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    #[test]
    fn descriptors_arrive_with_their_message_close_on_exec() {
        let (a, b) = pair();
        let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), b"conn 1", &[pipe_write.as_fd()]).unwrap();
        drop(pipe_write);

        let mut buffer = [0u8; 64];
        let received = recv(b.as_fd(), &mut buffer).unwrap();
        assert_eq!(buffer.get(..received.len), Some(&b"conn 1"[..]));
        assert_eq!(received.fds.len(), 1);
        let passed = received.fds.into_iter().next().unwrap();
        assert!(is_cloexec(&passed));

        std::fs::File::from(passed).write_all(b"through").unwrap();
        let mut read = String::new();
        std::fs::File::from(pipe_read)
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "through");
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_refused() {
        let (a, b) = pair();
        send(a.as_fd(), &[7u8; 100], &[]).unwrap();
        let mut small = [0u8; 10];
        assert!(matches!(
            recv(b.as_fd(), &mut small),
            Err(RecvError::TooLong { limit: 10 })
        ));
    }

    #[test]
    fn too_many_descriptors_are_refused_on_both_ends() {
        let (a, b) = pair();
        let files: Vec<std::fs::File> = (0..=MAX_FDS)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
        assert!(send(a.as_fd(), b"x", &borrowed).is_err());

        // A peer that ignores the limit gets its message discarded, and the
        // descriptors that did arrive are closed.
        let raw: Vec<RawFd> = borrowed.iter().map(AsRawFd::as_raw_fd).collect();
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut buffer = [0u8; 16];
        assert!(matches!(
            recv(b.as_fd(), &mut buffer),
            Err(RecvError::TooManyFds)
        ));
    }

    #[test]
    fn peer_credentials_name_this_process() {
        let (a, _b) = pair();
        let credentials = peer_credentials(&a).unwrap();
        assert_eq!(credentials.pid, nix::unistd::getpid());
        assert_eq!(credentials.uid, nix::unistd::getuid());
        assert_eq!(credentials.gid, nix::unistd::getgid());
    }
}
