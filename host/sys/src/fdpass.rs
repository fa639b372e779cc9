//! Passing descriptors with a small message over a unix socket.
//!
//! One call sends one message: up to [`MAX_MESSAGE`] bytes and up to
//! [`MAX_FDS`] descriptors as `SCM_RIGHTS`. Received descriptors are
//! close-on-exec from the moment they exist (`MSG_CMSG_CLOEXEC`). A message
//! or a control message that did not fit is an error, and any descriptor
//! that did arrive with it is closed, so a peer cannot make the receiver
//! leak descriptors or act on half a message. Message boundaries hold on
//! `SOCK_SEQPACKET` and `SOCK_DGRAM` sockets; that is what the callers use.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, getsockopt, sendmsg, sockopt};
use nix::unistd::{Gid, Pid, Uid};

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 8;

/// The largest message body, in bytes.
pub const MAX_MESSAGE: usize = 4096;

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
    let message = receive(socket, body, 0)?;
    // Returning drops `message.fds`, closing whatever came with a bad message.
    if message.control_truncated || message.fds.len() > MAX_FDS {
        return Err(RecvError::TooManyFds);
    }
    if message.truncated {
        return Err(RecvError::TooLong { limit });
    }
    Ok(Received {
        len: message.len,
        fds: message.fds,
    })
}

/// What one `recvmsg` brought, with every descriptor it installed owned,
/// so none can leak whatever the caller decides.
struct Message {
    len: usize,
    truncated: bool,
    control_truncated: bool,
    fds: Vec<OwnedFd>,
    credentials: Option<Credentials>,
}

/// Control space for credentials and the most descriptors the kernel
/// passes, in 8-byte words so the buffer is aligned for `cmsghdr`.
const CONTROL_WORDS: usize = 160;

/// Receives one message with `recvmsg`, walking the control headers itself:
/// unlike a library walk, it still finds and takes ownership of every
/// descriptor the kernel installed when the control data was cut.
fn receive(socket: BorrowedFd<'_>, buffer: &mut [u8], flags: libc::c_int) -> io::Result<Message> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &raw mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = size_of_val(&control);
    // SAFETY: `header` points at `iov` (which points at `buffer`) and at
    // `control`, all alive and writable for the call.
    let received = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &raw mut header,
            flags | libc::MSG_CMSG_CLOEXEC,
        )
    };
    let Ok(len) = usize::try_from(received) else {
        return Err(io::Error::last_os_error());
    };
    let mut message = Message {
        len,
        truncated: header.msg_flags & libc::MSG_TRUNC != 0,
        control_truncated: header.msg_flags & libc::MSG_CTRUNC != 0,
        fds: Vec::new(),
        credentials: None,
    };
    // SAFETY: recvmsg filled `header`; its control fields describe `control`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const header) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies whole
        // inside `control`, as the kernel wrote it.
        let head = unsafe { cmsg.read_unaligned() };
        // SAFETY: as above; CMSG_DATA only computes an address past it.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
        let data_len = head.cmsg_len.saturating_sub(header_len);
        match (head.cmsg_level, head.cmsg_type) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                let count = data_len / size_of::<libc::c_int>();
                for index in 0..count {
                    let slot = data.cast::<libc::c_int>().wrapping_add(index);
                    // SAFETY: the kernel wrote `count` descriptors after the
                    // header, inside `control`.
                    let fd = unsafe { slot.read_unaligned() };
                    // SAFETY: the kernel installed `fd` for this message;
                    // nothing else owns it.
                    message.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if data_len >= size_of::<libc::ucred>() => {
                // SAFETY: the kernel wrote a whole ucred after the header.
                let credentials = unsafe { data.cast::<libc::ucred>().read_unaligned() };
                message.credentials = Some(Credentials {
                    pid: Pid::from_raw(credentials.pid),
                    uid: Uid::from_raw(credentials.uid),
                    gid: Gid::from_raw(credentials.gid),
                });
            }
            _ => {}
        }
        // SAFETY: `cmsg` is a header inside `header`'s control data.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const header, cmsg) };
    }
    Ok(message)
}

/// Makes every message received on the unix socket `socket` carry its
/// sender's credentials, as the kernel knows them (`SO_PASSCRED`).
pub fn pass_credentials(socket: impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(&socket, sockopt::PassCred, &true)?;
    Ok(())
}

/// A datagram and who sent it.
#[derive(Debug)]
pub struct Datagram {
    /// How many bytes of the buffer it filled.
    pub len: usize,
    /// Whether it was longer than the buffer and was cut.
    pub truncated: bool,
    /// The sender, as the kernel attests it; `None` if the socket does not
    /// pass credentials.
    pub sender: Option<Credentials>,
}

/// Receives one datagram on a socket set up with [`pass_credentials`],
/// without waiting. Descriptors a sender attached are closed unread.
pub fn recv_with_credentials(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<Datagram> {
    let message = receive(socket, buffer, libc::MSG_DONTWAIT)?;
    Ok(Datagram {
        len: message.len,
        truncated: message.truncated || message.control_truncated,
        sender: message.credentials,
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
    fn descriptors_of_a_cut_message_are_closed_not_leaked() {
        let (a, b) = pair();
        // The most a peer can send, with credentials taking control space
        // too: far more than a message may carry, so it is refused.
        pass_credentials(&b).unwrap();
        let (pipe_read, pipe_write) = nix::unistd::pipe().unwrap();
        let raw: Vec<RawFd> = vec![pipe_write.as_raw_fd(); 253];
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(pipe_write);
        let mut buffer = [0u8; 16];
        assert!(recv(b.as_fd(), &mut buffer).is_err());
        // Were any received copy of the write end still open, reading would
        // wait for it instead of seeing the end of the pipe.
        nix::fcntl::fcntl(
            &pipe_read,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(nix::unistd::read(&pipe_read, &mut byte), Ok(0));
    }

    #[test]
    fn datagrams_carry_their_sender() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        pass_credentials(&b).unwrap();
        nix::sys::socket::send(a.as_raw_fd(), b"READY=1", MsgFlags::empty()).unwrap();
        let mut buffer = [0u8; 64];
        let datagram = recv_with_credentials(b.as_fd(), &mut buffer).unwrap();
        assert_eq!(buffer.get(..datagram.len), Some(&b"READY=1"[..]));
        assert!(!datagram.truncated);
        let sender = datagram.sender.unwrap();
        assert_eq!(sender.pid, nix::unistd::getpid());
        assert_eq!(sender.uid, nix::unistd::getuid());
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
