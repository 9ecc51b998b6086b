//! Our own xenstore client for domforge-init (issue 19): the wire protocol of Xen's
//! `xen/include/public/io/xs_wire.h` and docs/misc/xenstore.txt over any byte stream — the C
//! xenstored's unix socket (`/run/xenstored/socket`) in the control domain, `/dev/xen/xenbus` in
//! a domU. We do not write a xenstored; [`fake`] is an in-memory one for unit tests only.

pub mod client;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod wire;

pub use client::{Client, NO_TX, Tx, WatchEvent};
pub use error::{Errno, XsError};
pub use wire::{Access, Perm};

/// Where Debian's xenstored (Xen 4.17/4.20, `XEN_RUN_STORED=/var/run/xenstored`) listens;
/// `/var/run` is a symlink to `/run` in our initramfs.
pub const SOCKET_PATHS: &[&str] = &["/run/xenstored/socket", "/var/run/xenstored/socket"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeXenstored;

    fn client() -> (FakeXenstored, Client<FakeXenstored>) {
        let d = FakeXenstored::new();
        (d.clone(), Client::new(d))
    }

    #[test]
    fn write_read_directory_and_missing_nodes() {
        let (d, mut c) = client();
        c.write(NO_TX, "/local/domain/1/name", b"app").unwrap();
        assert_eq!(c.read(NO_TX, "/local/domain/1/name").unwrap(), b"app");
        assert_eq!(c.directory(NO_TX, "/local/domain").unwrap(), vec!["1"]);
        assert_eq!(c.read_opt(NO_TX, "/nope").unwrap(), None);
        let e = c.read(NO_TX, "/nope").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        assert_eq!(d.value("/local/domain/1/name").as_deref(), Some("app"));
        c.mkdir(NO_TX, "/a/b").unwrap();
        c.rm(NO_TX, "/a").unwrap();
        assert!(d.node("/a/b").is_none());
    }

    #[test]
    fn perms_are_inherited_and_enforced() {
        let (d, mut c) = client();
        c.mkdir(NO_TX, "/local/domain/1/device/vbd").unwrap();
        let perms = [Perm::new(1, Access::None), Perm::new(0, Access::Read)];
        c.set_perms(NO_TX, "/local/domain/1/device/vbd", &perms)
            .unwrap();
        c.write(NO_TX, "/local/domain/1/device/vbd/51712/state", b"1")
            .unwrap();
        // pv-devices.md: children created by dom0 under a chmod'ed dir inherit its perms.
        assert_eq!(
            c.get_perms(NO_TX, "/local/domain/1/device/vbd/51712/state")
                .unwrap(),
            perms
        );
        let mut guest2 = Client::new(d.with_caller(2));
        let e = guest2
            .read(NO_TX, "/local/domain/1/device/vbd/51712/state")
            .unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EACCES));
    }

    #[test]
    fn transactions_commit_abort_and_conflict() {
        let (d, mut c) = client();
        let tx = c.transaction_start().unwrap();
        c.write(tx, "/x", b"1").unwrap();
        assert!(d.node("/x").is_none(), "invisible before commit");
        c.transaction_end(tx, true).unwrap();
        assert_eq!(d.value("/x").as_deref(), Some("1"));

        let tx = c.transaction_start().unwrap();
        c.write(tx, "/y", b"1").unwrap();
        c.transaction_end(tx, false).unwrap();
        assert!(d.node("/y").is_none());

        let tx = c.transaction_start().unwrap();
        c.write(tx, "/z", b"1").unwrap();
        c.write(NO_TX, "/other", b"1").unwrap();
        assert!(c.transaction_end(tx, true).unwrap_err().is_again());

        // in_transaction retries: the first attempt conflicts, the second commits.
        let mut attempts = 0;
        let poker = d.clone();
        c.in_transaction(3, |c, tx| {
            attempts += 1;
            c.write(tx, "/z", b"2")?;
            if attempts == 1 {
                poker.poke("/elsewhere", "x");
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(d.value("/z").as_deref(), Some("2"));
    }

    #[test]
    fn watches_fire_on_set_and_on_change_even_between_replies() {
        let (d, mut c) = client();
        c.watch("/local/domain/0/backend/vbd", "be").unwrap();
        // The initial event arrived before the OK and was queued.
        let e = c.next_event().unwrap();
        assert_eq!(
            (e.path.as_str(), e.token.as_str()),
            ("/local/domain/0/backend/vbd", "be")
        );
        d.poke("/local/domain/0/backend/vbd/1/51712/state", "2");
        let e = c.next_event().unwrap();
        assert_eq!(e.path, "/local/domain/0/backend/vbd/1/51712/state");
        assert!(c.next_event().is_err(), "the fake never blocks");
        c.unwatch("/local/domain/0/backend/vbd", "be").unwrap();
    }

    #[test]
    fn introduce_and_domain_queries() {
        let (d, mut c) = client();
        c.watch("@introduceDomain", "intro").unwrap();
        assert!(!c.is_domain_introduced(3).unwrap());
        c.introduce(3, 0xfeffc, 5).unwrap();
        assert!(c.is_domain_introduced(3).unwrap());
        assert_eq!(d.introduced().get(&3), Some(&(0xfeffc, 5)));
        assert_eq!(c.get_domain_path(3).unwrap(), "/local/domain/3");
        let events: Vec<_> = c.take_events().into_iter().map(|e| e.token).collect();
        assert_eq!(events, vec!["intro", "intro"]);
        c.release(3).unwrap();
        let log = d.log();
        assert_eq!(log[2].args, vec!["3", &0xfeffcu64.to_string(), "5"]);
    }

    #[test]
    fn oversized_requests_are_refused_before_sending() {
        let (d, mut c) = client();
        let big = vec![b'x'; 5000];
        assert!(matches!(
            c.write(NO_TX, "/big", &big),
            Err(XsError::TooLong { .. })
        ));
        assert!(d.log().is_empty());
    }
}
