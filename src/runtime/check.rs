//! The lines `authentik-bridge check` prints. Each sink says its own, through the sink contract, so the
//! command names no sink.

/// How a line reads: `ok`, `warn` (the operator should know; not a failure) or `FAIL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Warn,
    Fail,
}

/// One line of `check`: its mark, what it is about, and the detail (with the fix, on a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub mark: Mark,
    pub what: &'static str,
    pub detail: String,
}

impl CheckLine {
    /// `ok` when `ok`, else `FAIL`.
    pub fn new(ok: bool, what: &'static str, detail: impl Into<String>) -> CheckLine {
        CheckLine {
            mark: if ok { Mark::Ok } else { Mark::Fail },
            what,
            detail: detail.into(),
        }
    }

    pub fn warn(what: &'static str, detail: impl Into<String>) -> CheckLine {
        CheckLine {
            mark: Mark::Warn,
            what,
            detail: detail.into(),
        }
    }

    pub fn failed(&self) -> bool {
        self.mark == Mark::Fail
    }
}
