//! Admission: whether a connection warden accepted may reach a process.

/// What the admission decision knows of a connection's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Connections from its address open now, this one included.
    pub concurrent: u32,
    /// Connections from its address in the last second, this one included.
    pub last_second: u32,
}

/// The service's per-source limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `per_source_limit`: connections open at once.
    pub concurrent: Option<u32>,
    /// `per_source_rate`: connections per second.
    pub per_second: Option<u32>,
}

/// What happens to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It goes to a process.
    Accept,
    /// It is closed, for this reason.
    Reject(&'static str),
    /// It is decided again after this many milliseconds.
    Delay(u64),
}

/// xinetd's `per_source` and `cps`, as anvil limits users and addresses:
/// a source with more connections open than `per_source_limit` is refused
/// with `per-source-limit`, one that opened more than `per_source_rate` in
/// the last second with `per-source-rate`.
pub fn per_source(limits: &Limits, source: &Source) -> Verdict {
    if limits
        .concurrent
        .is_some_and(|limit| source.concurrent > limit)
    {
        Verdict::Reject("per-source-limit")
    } else if limits
        .per_second
        .is_some_and(|rate| source.last_second > rate)
    {
        Verdict::Reject("per-source-rate")
    } else {
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_either_limit_is_refused() {
        let limits = Limits {
            concurrent: Some(2),
            per_second: Some(5),
        };
        let source = |concurrent, last_second| Source {
            concurrent,
            last_second,
        };
        assert_eq!(per_source(&limits, &source(2, 5)), Verdict::Accept);
        assert_eq!(
            per_source(&limits, &source(3, 1)),
            Verdict::Reject("per-source-limit")
        );
        assert_eq!(
            per_source(&limits, &source(1, 6)),
            Verdict::Reject("per-source-rate")
        );
        let none = Limits {
            concurrent: None,
            per_second: None,
        };
        assert_eq!(per_source(&none, &source(1000, 1000)), Verdict::Accept);
    }
}
