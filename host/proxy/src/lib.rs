//! warden-proxy: the PROXY protocol, versions 1 and 2, on warden's listeners
//! with `haproxy = yes`.
//!
//! A connection on such a listener must come from a network in
//! `haproxy_trusted_networks` and send its PROXY header first, within
//! `haproxy_timeout`; the addresses in the header replace the connection's
//! own for the policies, the service, and an inetd service's UCSPI
//! variables. A connection that breaks a rule (an untrusted source, no
//! header in time, a malformed one) is closed at once, and the reason
//! logged and counted; it never reaches a process.
//!
//! The header is read exactly: byte by byte up to the line end for version
//! 1 (107 bytes at most), the fixed 16 bytes and then the length they
//! announce for version 2. What the client sends after the header is the
//! service's and stays in the socket. The parsing itself is the `ppp`
//! crate's (version 2.x), a parser of both versions with no I/O of its own;
//! this module only frames what it is given. A `LOCAL` (version 2) or
//! `UNKNOWN` (version 1) header, which a proxy sends for its own health
//! checks, keeps the connection's own addresses.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest version 1 header, its line end included.
pub const MAX_V1: usize = 107;

/// The longest version 2 header read, addresses and extensions included.
pub const MAX_V2: usize = 16 + 1024;

/// The start of a version 2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The addresses a header gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client's.
    pub source: SocketAddr,
    /// The one the client connected to, at the proxy.
    pub destination: SocketAddr,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// It came from outside `haproxy_trusted_networks`.
    #[error("{0} is not in haproxy_trusted_networks")]
    Untrusted(IpAddr),
    /// No whole header came in time.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    /// What came is not a PROXY header.
    #[error("not a PROXY header: {0}")]
    Malformed(String),
    /// The connection failed before the header was read.
    #[error("the connection failed before its PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxyError {
    /// The reason, as it is counted.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Untrusted(_) => "proxy-untrusted",
            ProxyError::Timeout(_) => "proxy-timeout",
            ProxyError::Malformed(_) => "proxy-malformed",
            ProxyError::Io(_) => "proxy-failed",
        }
    }
}

/// Checks the source and reads the header of a connection from `peer`:
/// the addresses it gives, or `None` when it keeps the connection's own.
/// `trusted` says whether `peer` is in `haproxy_trusted_networks`.
pub async fn accept<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: IpAddr,
    trusted: bool,
    timeout: Duration,
) -> Result<Option<Addresses>, ProxyError> {
    if !trusted {
        return Err(ProxyError::Untrusted(peer));
    }
    let header = tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| ProxyError::Timeout(timeout))??;
    parse(&header)
}

/// Reads exactly one header's bytes from `stream`.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Vec<u8>, ProxyError> {
    let mut header = vec![0u8; 5];
    read_exact(stream, &mut header).await?;
    if header.as_slice() == b"PROXY" {
        while !header.ends_with(b"\r\n") {
            if header.len() >= MAX_V1 {
                return Err(ProxyError::Malformed(format!(
                    "a version 1 header longer than {MAX_V1} bytes"
                )));
            }
            let mut byte = [0u8; 1];
            read_exact(stream, &mut byte).await?;
            header.extend_from_slice(&byte);
        }
        return Ok(header);
    }
    if header.as_slice() == V2_SIGNATURE.get(..5).unwrap_or_default() {
        header.resize(16, 0);
        read_exact(stream, header.get_mut(5..).unwrap_or_default()).await?;
        if header.get(..12) != Some(V2_SIGNATURE) {
            return Err(ProxyError::Malformed(
                "a bad version 2 signature".to_owned(),
            ));
        }
        let length = header
            .get(14..16)
            .map_or(0, |len| usize::from(u16::from_be_bytes([len[0], len[1]])));
        if 16 + length > MAX_V2 {
            return Err(ProxyError::Malformed(format!(
                "a version 2 header of {} bytes, longer than {MAX_V2}",
                16 + length
            )));
        }
        header.resize(16 + length, 0);
        read_exact(stream, header.get_mut(16..).unwrap_or_default()).await?;
        return Ok(header);
    }
    Err(ProxyError::Malformed(
        "the connection did not start with a PROXY header".to_owned(),
    ))
}

async fn read_exact<R: AsyncRead + Unpin>(
    stream: &mut R,
    buffer: &mut [u8],
) -> Result<(), ProxyError> {
    match stream.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(
            ProxyError::Malformed("the connection closed inside the header".to_owned()),
        ),
        Err(error) => Err(ProxyError::Io(error)),
    }
}

/// What a whole header says: its addresses, or `None` for a `LOCAL` or
/// `UNKNOWN` header.
pub fn parse(header: &[u8]) -> Result<Option<Addresses>, ProxyError> {
    if header.starts_with(b"PROXY") {
        let parsed =
            v1::Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        return Ok(match parsed.addresses {
            v1::Addresses::Tcp4(ip) => Some(Addresses {
                source: SocketAddr::new(ip.source_address.into(), ip.source_port),
                destination: SocketAddr::new(ip.destination_address.into(), ip.destination_port),
            }),
            v1::Addresses::Tcp6(ip) => Some(Addresses {
                source: SocketAddr::new(ip.source_address.into(), ip.source_port),
                destination: SocketAddr::new(ip.destination_address.into(), ip.destination_port),
            }),
            v1::Addresses::Unknown => None,
        });
    }
    let parsed = v2::Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if parsed.command == v2::Command::Local {
        return Ok(None);
    }
    match parsed.addresses {
        v2::Addresses::IPv4(ip) => Ok(Some(Addresses {
            source: SocketAddr::new(ip.source_address.into(), ip.source_port),
            destination: SocketAddr::new(ip.destination_address.into(), ip.destination_port),
        })),
        v2::Addresses::IPv6(ip) => Ok(Some(Addresses {
            source: SocketAddr::new(ip.source_address.into(), ip.source_port),
            destination: SocketAddr::new(ip.destination_address.into(), ip.destination_port),
        })),
        v2::Addresses::Unspecified => Ok(None),
        v2::Addresses::Unix(_) => Err(ProxyError::Malformed(
            "a unix-socket address, which a TCP listener cannot have".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    fn v2_tcp4(source: [u8; 4], source_port: u16) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&source);
        header.extend_from_slice(&[192, 0, 2, 1]);
        header.extend_from_slice(&source_port.to_be_bytes());
        header.extend_from_slice(&143u16.to_be_bytes());
        header
    }

    #[test]
    fn a_version_1_header_is_read_exactly_and_gives_its_addresses() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143\r\nA1 LOGIN";
        let header = run(read_header(&mut input)).expect("a header");
        assert_eq!(input, b"A1 LOGIN", "what follows the header stays");
        let addresses = parse(&header).expect("valid").expect("addresses");
        assert_eq!(
            addresses.source,
            "203.0.113.9:50123".parse().expect("an address")
        );
        assert_eq!(
            addresses.destination,
            "192.0.2.1:143".parse().expect("an address")
        );
    }

    #[test]
    fn a_version_2_header_is_read_exactly_and_gives_its_addresses() {
        let mut bytes = v2_tcp4([198, 51, 100, 7], 40000);
        bytes.extend_from_slice(b"hello");
        let mut input = bytes.as_slice();
        let header = run(read_header(&mut input)).expect("a header");
        assert_eq!(input, b"hello");
        let addresses = parse(&header).expect("valid").expect("addresses");
        assert_eq!(
            addresses.source,
            "198.51.100.7:40000".parse().expect("an address")
        );
    }

    #[test]
    fn local_and_unknown_keep_the_connections_own_addresses() {
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").expect("valid"), None);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).expect("valid"), None);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143 and then a great deal more text\r\n",
            b"PROX",
        ] {
            let mut input = bad;
            let result = run(async {
                let header = read_header(&mut input).await?;
                parse(&header)
            });
            assert!(
                matches!(result, Err(ProxyError::Malformed(_))),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn an_untrusted_source_is_refused_before_anything_is_read() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.9 192.0.2.1 50123 143\r\n";
        let result = run(accept(
            &mut input,
            "127.0.0.1".parse().expect("an address"),
            false,
            Duration::from_secs(1),
        ));
        assert!(matches!(result, Err(ProxyError::Untrusted(_))));
        assert_eq!(input.len(), 44, "nothing was read");
    }
}
