//! Setting values as operators write them.
//!
//! Each type here parses one kind of value from its TOML form (a string, an
//! integer, or both), knows Dovecot's spellings and magic numbers, and prints
//! itself back in a form that parses to the same value. Parsing never guesses:
//! a value that could mean two things (a decimal `mode`, a bare number with no
//! unit where a unit matters) is an error whose message says what to write.
//!
//! Nothing here knows about keys, files or spans; the error strings are
//! completed with the key path and position by the caller.

use std::fmt;
use std::net::IpAddr;

/// Dovecot 2.3's `idle_kill` value meaning "never" (`UINT_MAX`).
pub const DOVECOT_INFINITE_SECS: u64 = u32::MAX as u64;

/// Dovecot 2.3's `vsz_limit` value meaning "use `default_vsz_limit`" (`UOFF_T_MAX`).
pub const DOVECOT_DEFAULT_SIZE: u64 = u64::MAX;

/// The smallest `vsz_limit` that is not 0: below this no service can start.
pub const MIN_VSZ_LIMIT: u64 = 1024 * 1024;

/// A size in bytes, written `256M`, `1G`, `512k`, `1024` or `1024 B`.
///
/// Units are binary (`1k` = 1024), as in Dovecot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

const SIZE_UNITS: [(&str, u64); 5] = [
    ("T", 1 << 40),
    ("G", 1 << 30),
    ("M", 1 << 20),
    ("k", 1 << 10),
    ("B", 1),
];

impl Size {
    /// Parses a size string: a number, optional spaces, and an optional unit
    /// (`B`, `k`/`K`/`kB`, `M`/`MB`, `G`/`GB`, `T`/`TB`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text.trim());
        if unit.starts_with(['.', ',']) {
            return Err(format!(
                "`{text}` is not a whole number; write it in a smaller unit, like \"1536M\" for 1.5G"
            ));
        }
        let Ok(count) = number.parse::<u64>() else {
            return Err(format!(
                "`{text}` is not a size; write a number with a unit, like \"256M\" or \"1G\""
            ));
        };
        let multiplier = match unit.trim() {
            "" | "B" | "b" => 1,
            "k" | "K" | "kB" | "KB" | "KiB" => 1 << 10,
            "M" | "MB" | "MiB" => 1 << 20,
            "G" | "GB" | "GiB" => 1 << 30,
            "T" | "TB" | "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "`{other}` is not a size unit; use B, k, M, G or T, like \"256M\""
                ));
            }
        };
        count
            .checked_mul(multiplier)
            .map(Size)
            .ok_or_else(|| format!("`{text}` is larger than 16 exabytes; write \"unlimited\""))
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the size exactly: `256M`, `1536k`, `100B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let (unit, multiplier) = SIZE_UNITS
            .iter()
            .copied()
            .find(|&(_, m)| bytes != 0 && bytes.is_multiple_of(m))
            .unwrap_or(("B", 1));
        write!(f, "{}{unit}", bytes / multiplier)
    }
}

/// A length of time in milliseconds, written `60s`, `1m`, `2 hours`, `500ms`;
/// a bare number is seconds, as in Dovecot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    millis: u64,
}

const DURATION_UNITS: [(&str, u64); 6] = [
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

impl Duration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            millis: secs.saturating_mul(1000),
        }
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// The duration in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The duration as a standard library value.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }

    /// Parses a duration string: a number, optional spaces, and an optional
    /// unit (`ms`, `s`, `m`, `h`, `d`, `w`, also spelled out: `secs`, `minutes`…).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text.trim());
        if unit.starts_with(['.', ',']) {
            return Err(format!(
                "`{text}` is not a whole number; write it in a smaller unit, like \"1500ms\" for 1.5s"
            ));
        }
        let Ok(count) = number.parse::<u64>() else {
            return Err(format!(
                "`{text}` is not a duration; write a number with a unit, like \"60s\" or \"1m\""
            ));
        };
        let multiplier = match unit.trim() {
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1,
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60 * 1000,
            "h" | "hour" | "hours" => 3600 * 1000,
            "d" | "day" | "days" => 24 * 3600 * 1000,
            "w" | "week" | "weeks" => 7 * 24 * 3600 * 1000,
            other => {
                return Err(format!(
                    "`{other}` is not a unit of time; use ms, s, m, h, d or w, like \"60s\""
                ));
            }
        };
        count
            .checked_mul(multiplier)
            .map(|millis| Duration { millis })
            .ok_or_else(|| format!("`{text}` is too long; write \"infinite\""))
    }
}

impl fmt::Display for Duration {
    /// The largest unit that divides the duration exactly: `1m`, `90s`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.millis;
        let (unit, multiplier) = DURATION_UNITS
            .iter()
            .copied()
            .find(|&(_, m)| millis != 0 && millis.is_multiple_of(m))
            .unwrap_or(("s", 1000));
        write!(f, "{}{unit}", millis / multiplier)
    }
}

/// Splits `"256 M"` into `("256", " M")`.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A file mode for a listener: permission bits, octal.
///
/// `0` is a valid mode and means the listener is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(u32);

impl Mode {
    /// A listener's mode when the file gives none: read and write for the
    /// owner only (Dovecot's code uses 0600; its 2.3 page says 0700).
    pub const DEFAULT: Mode = Mode(0o600);

    /// The highest mode a listener may have: permission bits only.
    const MAX: u32 = 0o777;

    /// A mode from its permission bits; bits above `0o777` are an error.
    pub fn new(bits: u32) -> Result<Self, String> {
        if bits > Self::MAX {
            return Err(format!(
                "{bits:#o} has bits outside the permission bits; a listener mode is at most \"0777\""
            ));
        }
        Ok(Mode(bits))
    }

    /// Parses `"0600"`: octal digits with a leading zero, so that nobody reads
    /// it as a decimal number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!(
                "`{text}` is not an octal mode; write the permission bits in octal, like \"0600\""
            ));
        }
        if !text.starts_with('0') {
            return Err(format!(
                "a mode is octal; write \"0{text}\" so it cannot be read as decimal {text}"
            ));
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|_| {
            format!("`{text}` is not an octal mode; write the permission bits, like \"0600\"")
        })?;
        Self::new(bits)
    }

    /// The error for a mode written as a decimal TOML integer.
    ///
    /// Only `0` is accepted in decimal, because it reads the same in any base.
    pub fn decimal_error(digits: &str) -> String {
        format!("mode = {digits} is a decimal number; a mode is octal: write mode = \"0{digits}\"")
    }

    /// The permission bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether this mode disables the listener (`mode = 0`).
    pub const fn disables(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An address a listener binds, from `address` or the global `listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenAddress {
    /// `*`: every IPv4 address.
    AnyV4,
    /// `::` or `[::]`: every IPv6 address (the socket is IPv6-only).
    AnyV6,
    /// One address.
    Ip(IpAddr),
}

impl ListenAddress {
    /// Parses one address: `*`, `::`, `[::]`, an IPv4 address, or an IPv6
    /// address with or without brackets. Host names are refused, because the
    /// configuration is checked without name lookups.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "*" | "0.0.0.0" => return Ok(ListenAddress::AnyV4),
            "::" | "[::]" => return Ok(ListenAddress::AnyV6),
            _ => {}
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        bare.parse::<IpAddr>().map(ListenAddress::Ip).map_err(|_| {
            format!(
                "`{text}` is not an IP address; write `*` (all IPv4), `::` (all IPv6) or an address like 127.0.0.1"
            )
        })
    }

    /// Parses a list separated by spaces or commas, as Dovecot's `listen` is.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split([' ', ',', '\t'])
            .filter(|word| !word.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Whether a socket bound to `self` and one bound to `other` on the same
    /// port would collide: equal addresses, or a wildcard and an address of
    /// its family.
    pub fn overlaps(self, other: Self) -> bool {
        match (self, other) {
            (a, b) if a == b => true,
            (ListenAddress::AnyV4, ListenAddress::Ip(IpAddr::V4(_)))
            | (ListenAddress::Ip(IpAddr::V4(_)), ListenAddress::AnyV4)
            | (ListenAddress::AnyV6, ListenAddress::Ip(IpAddr::V6(_)))
            | (ListenAddress::Ip(IpAddr::V6(_)), ListenAddress::AnyV6) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::AnyV4 => f.write_str("*"),
            ListenAddress::AnyV6 => f.write_str("::"),
            ListenAddress::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The name of a service: the `NAME` in `[service.NAME]`.
///
/// It appears in key paths, file paths, environment variables and log
/// lines, so it is kept to letters, digits, `-` and `_`, and does not start
/// with `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks a service name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if text.is_empty() || text.len() > 64 || text.starts_with('-') || !text.chars().all(allowed)
        {
            return Err(format!(
                "`{text}` is not a service name; use up to 64 letters, digits, `-` or `_`, like imap-login"
            ));
        }
        Ok(ServiceName(text.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network, `address/prefix` (`10.0.0.0/8`, `2001:db8::/32`), or one
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `192.0.2.0/24`, `::1`, or `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let bad = || {
            format!(
                "`{text}` is not a network; write an address or address/prefix, like \"10.0.0.0/8\""
            )
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { address, prefix })
    }

    /// Whether `address` is inside the network. An IPv4 address mapped
    /// into IPv6 (`::ffff:192.0.2.1`) counts as the IPv4 address.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let (network, candidate, bits) = match (self.address, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(n.to_bits()), u128::from(a.to_bits()), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (n.to_bits(), a.to_bits(), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0) & (u128::MAX >> (128 - bits));
        network & mask == candidate & mask
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(Size::parse("256M"), Ok(Size(256 << 20)));
        assert_eq!(Size::parse("1G"), Ok(Size(1 << 30)));
        assert_eq!(Size::parse("1 G"), Ok(Size(1 << 30)));
        assert_eq!(Size::parse("512k"), Ok(Size(512 << 10)));
        assert_eq!(Size::parse("512 kB"), Ok(Size(512 << 10)));
        assert_eq!(Size::parse("2T"), Ok(Size(2 << 40)));
        assert_eq!(Size::parse("1024"), Ok(Size(1024)));
        assert_eq!(Size::parse("100 B"), Ok(Size(100)));
        assert_eq!(Size::parse("0"), Ok(Size(0)));
    }

    #[test]
    fn sizes_reject_what_they_cannot_read() {
        assert!(Size::parse("").is_err());
        assert!(Size::parse("M").is_err());
        assert!(Size::parse("-1M").is_err());
        assert!(Size::parse("1.5G").is_err());
        assert_eq!(
            Size::parse("3Q"),
            Err("`Q` is not a size unit; use B, k, M, G or T, like \"256M\"".to_owned())
        );
        assert!(Size::parse("99999999T").unwrap_err().contains("unlimited"));
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit_and_parse_back() {
        for (bytes, text) in [
            (256 << 20, "256M"),
            (1 << 30, "1G"),
            (1536 << 10, "1536k"),
            (100, "100B"),
            (0, "0B"),
        ] {
            assert_eq!(Size(bytes).to_string(), text);
            assert_eq!(Size::parse(text), Ok(Size(bytes)));
        }
    }

    #[test]
    fn durations_parse_with_dovecot_units() {
        assert_eq!(Duration::parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(Duration::parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(Duration::parse("1 min"), Ok(Duration::from_secs(60)));
        assert_eq!(Duration::parse("2 hours"), Ok(Duration::from_secs(7200)));
        assert_eq!(Duration::parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(Duration::parse("1w"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(Duration::parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(Duration::parse("500ms").map(Duration::as_millis), Ok(500));
    }

    #[test]
    fn durations_reject_what_they_cannot_read() {
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("soon").is_err());
        assert!(Duration::parse("1.5s").is_err());
        assert_eq!(
            Duration::parse("3 fortnights"),
            Err("`fortnights` is not a unit of time; use ms, s, m, h, d or w, like \"60s\"".into())
        );
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit_and_parse_back() {
        for (millis, text) in [
            (60_000, "1m"),
            (90_000, "90s"),
            (1_500, "1500ms"),
            (3_600_000, "1h"),
            (0, "0s"),
        ] {
            let duration = Duration { millis };
            assert_eq!(duration.to_string(), text);
            assert_eq!(Duration::parse(text), Ok(duration));
        }
    }

    #[test]
    fn modes_are_octal_strings_with_a_leading_zero() {
        assert_eq!(Mode::parse("0600").map(Mode::bits), Ok(0o600));
        assert_eq!(Mode::parse("0666").map(Mode::bits), Ok(0o666));
        assert_eq!(Mode::parse("0o600").map(Mode::bits), Ok(0o600));
        assert_eq!(Mode::parse("0").map(Mode::bits), Ok(0));
        assert!(Mode::parse("0").is_ok_and(Mode::disables));
        assert_eq!(
            Mode::parse("700"),
            Err("a mode is octal; write \"0700\" so it cannot be read as decimal 700".into())
        );
        assert!(Mode::parse("0800").is_err());
        assert!(Mode::parse("rw-").is_err());
        assert!(Mode::parse("").is_err());
        assert!(Mode::parse("01777").is_err());
    }

    #[test]
    fn modes_print_as_four_octal_digits() {
        assert_eq!(Mode(0o600).to_string(), "0600");
        assert_eq!(Mode(0).to_string(), "0000");
        assert_eq!(Mode::parse(&Mode(0o660).to_string()), Ok(Mode(0o660)));
    }

    #[test]
    fn decimal_modes_say_what_to_write() {
        assert_eq!(
            Mode::decimal_error("700"),
            "mode = 700 is a decimal number; a mode is octal: write mode = \"0700\""
        );
    }

    #[test]
    fn listen_addresses_know_the_wildcards() {
        assert_eq!(ListenAddress::parse("*"), Ok(ListenAddress::AnyV4));
        assert_eq!(ListenAddress::parse("::"), Ok(ListenAddress::AnyV6));
        assert_eq!(ListenAddress::parse("[::]"), Ok(ListenAddress::AnyV6));
        assert_eq!(
            ListenAddress::parse("127.0.0.1"),
            Ok(ListenAddress::Ip([127, 0, 0, 1].into()))
        );
        assert_eq!(
            ListenAddress::parse("[::1]"),
            Ok(ListenAddress::Ip("::1".parse().unwrap()))
        );
        assert!(ListenAddress::parse("mail.example.org").is_err());
    }

    #[test]
    fn listen_lists_split_on_spaces_and_commas() {
        assert_eq!(
            ListenAddress::parse_list("*, ::"),
            Ok(vec![ListenAddress::AnyV4, ListenAddress::AnyV6])
        );
        assert_eq!(ListenAddress::parse_list(""), Ok(vec![]));
        assert!(ListenAddress::parse_list("* nowhere").is_err());
    }

    #[test]
    fn wildcards_overlap_addresses_of_their_family_only() {
        let v4 = ListenAddress::Ip([127, 0, 0, 1].into());
        let v6 = ListenAddress::Ip("::1".parse().unwrap());
        assert!(ListenAddress::AnyV4.overlaps(v4));
        assert!(v6.overlaps(ListenAddress::AnyV6));
        assert!(!ListenAddress::AnyV4.overlaps(v6));
        assert!(!ListenAddress::AnyV4.overlaps(ListenAddress::AnyV6));
        assert!(!v4.overlaps(ListenAddress::Ip([127, 0, 0, 2].into())));
    }

    #[test]
    fn service_names_are_safe_in_paths_and_environments() {
        assert!(ServiceName::parse("imap-login").is_ok());
        assert!(ServiceName::parse("dns_client").is_ok());
        assert!(ServiceName::parse("").is_err());
        assert!(ServiceName::parse("-imap").is_err());
        assert!(ServiceName::parse("../etc").is_err());
        assert!(ServiceName::parse("a.b").is_err());
        assert!(ServiceName::parse("im ap").is_err());
        assert!(ServiceName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn networks_hold_their_addresses() {
        let loopback = Network::parse("127.0.0.0/8").expect("a network");
        assert!(loopback.contains("127.0.0.2".parse().expect("an address")));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().expect("an address")));
        assert!(!loopback.contains("128.0.0.1".parse().expect("an address")));
        assert!(!loopback.contains("::1".parse().expect("an address")));
        let one = Network::parse("::1").expect("an address");
        assert!(one.contains("::1".parse().expect("an address")));
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("everything")
                .contains("203.0.113.9".parse().expect("an address"))
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("example.com").is_err());
    }
}
