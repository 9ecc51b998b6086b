//! Typed errors. xenstored answers a failed request with `XS_ERROR` carrying the errno *name*
//! (`"ENOENT"`, xs_wire.h `xsd_errors[]`), not a number, so the names are parsed back.

use crate::wire::MsgType;

/// The errno names of xs_wire.h `xsd_errors[]`.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Errno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
    /// A name not in the table above (newer xenstored).
    Other(String),
}

impl Errno {
    pub fn from_name(s: &str) -> Self {
        use Errno::*;
        match s {
            "EINVAL" => EINVAL,
            "EACCES" => EACCES,
            "EEXIST" => EEXIST,
            "EISDIR" => EISDIR,
            "ENOENT" => ENOENT,
            "ENOMEM" => ENOMEM,
            "ENOSPC" => ENOSPC,
            "EIO" => EIO,
            "ENOTEMPTY" => ENOTEMPTY,
            "ENOSYS" => ENOSYS,
            "EROFS" => EROFS,
            "EBUSY" => EBUSY,
            "EAGAIN" => EAGAIN,
            "EISCONN" => EISCONN,
            "E2BIG" => E2BIG,
            "EPERM" => EPERM,
            other => Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        use Errno::*;
        match self {
            EINVAL => "EINVAL",
            EACCES => "EACCES",
            EEXIST => "EEXIST",
            EISDIR => "EISDIR",
            ENOENT => "ENOENT",
            ENOMEM => "ENOMEM",
            ENOSPC => "ENOSPC",
            EIO => "EIO",
            ENOTEMPTY => "ENOTEMPTY",
            ENOSYS => "ENOSYS",
            EROFS => "EROFS",
            EBUSY => "EBUSY",
            EAGAIN => "EAGAIN",
            EISCONN => "EISCONN",
            E2BIG => "E2BIG",
            EPERM => "EPERM",
            Other(s) => s,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XsError {
    #[error("xenstore {op:?} {what}: {}", errno.name())]
    Daemon {
        op: MsgType,
        what: String,
        errno: Errno,
    },
    #[error("xenstore connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("xenstore protocol: {0}")]
    Protocol(String),
    #[error("xenstore request of {len} bytes exceeds XENSTORE_PAYLOAD_MAX (4096)")]
    TooLong { len: usize },
}

impl XsError {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            XsError::Daemon { errno, .. } => Some(errno.clone()),
            _ => None,
        }
    }

    /// A transaction commit that must be retried.
    pub fn is_again(&self) -> bool {
        self.errno() == Some(Errno::EAGAIN)
    }
}
