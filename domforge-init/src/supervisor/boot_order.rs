//! Boot order from the device graph (issue 19): a domain whose PV devices a driver domain serves is
//! built only once that driver domain serves — its domforge-init has loaded the backends and
//! written its [`serving_node`] — or after [`BACKEND_WAIT`], whichever comes first.
//!
//! Why wait rather than boot everything at once and let the frontends connect late: a driver
//! domain that goes down before it serves (under nested TCG a fresh PVH guest sporadically
//! triple-faults in early boot) is rebuilt with a new domain id, and Linux's frontends do not follow
//! a new backend (see `rebuild_frontends_of`), so every frontend already built would have to be
//! rebuilt with it, and each of those rebuilds costs a boot and a restart from its budget. A
//! frontend that does not exist yet costs nothing. After the wait the frontend is built anyway and
//! its devices connect whenever the backend serves (blkfront and netfront wait for the backend's
//! `state`), so a slow driver domain delays its frontends by at most [`BACKEND_WAIT`].

use super::{Host, Supervisor};
use crate::evtchn::EventChannel;
use domctl::Hypercalls;
use std::time::{Duration, Instant};
use xenstore_client::NO_TX;
use xenstore_layout::serving_node;

/// How long a domain waits for the driver domains serving its devices. Nested-TCG driver domains
/// served 40–90 s after they were built in this project's QEMU runs; a real board is far faster.
pub(super) const BACKEND_WAIT: Duration = Duration::from_secs(150);

/// A domain to be built once the domains serving its devices serve.
pub(super) struct Waiting {
    pub(super) index: usize,
    pub(super) deadline: Instant,
    /// A restart (its budget already taken): reported as `restarted` when built.
    pub(super) restart: bool,
}

impl<H: Hypercalls, E: EventChannel, O: Host> Supervisor<H, E, O> {
    /// Builds domain `index` now if every driver domain serving its devices serves, otherwise
    /// queues it for [`Self::start_waiting`]. Returns whether it was built now.
    pub(super) fn start_when_served(&mut self, index: usize, now: Instant, restart: bool) -> bool {
        let unready = self.unready_backends(index);
        if unready.is_empty() {
            return self.start_now(index, now, restart);
        }
        let name = self.domain(index).name.to_string();
        let names = self.names(&unready);
        self.info(format!(
            "'{name}' is built once {names} serve{} its devices (at most {} s from now)",
            if unready.len() == 1 { "s" } else { "" },
            BACKEND_WAIT.as_secs()
        ));
        // `for=a,b`: the driver domains' names (names have no commas or spaces).
        let list: Vec<String> = unready
            .iter()
            .map(|&i| self.domain(i).name.to_string())
            .collect();
        self.host
            .event("waiting", &[("name", name), ("for", list.join(","))]);
        self.waiting.push(Waiting {
            index,
            deadline: now + BACKEND_WAIT,
            restart,
        });
        false
    }

    /// Builds the waiting domains whose driver domains now serve, and those whose wait ran out (said
    /// on the console, naming the driver domains that did not serve).
    pub(super) fn start_waiting(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.waiting.len() {
            let (index, deadline) = (self.waiting[i].index, self.waiting[i].deadline);
            let unready = self.unready_backends(index);
            if !unready.is_empty() && now < deadline {
                i += 1;
                continue;
            }
            let w = self.waiting.remove(i);
            if !unready.is_empty() {
                let names = self.names(&unready);
                let name = self.domain(index).name.to_string();
                self.info(format!(
                    "'{name}' is built without waiting longer for {names}, which did not serve within {} s; its devices connect when {names} serve{}",
                    BACKEND_WAIT.as_secs(),
                    if unready.len() == 1 { "s" } else { "" },
                ));
                self.host.event("wait-timeout", &[("name", name)]);
            }
            self.start_now(index, now, w.restart);
        }
    }

    /// Builds domain `index`; after a restart, reports it and rebuilds the frontends it serves.
    fn start_now(&mut self, index: usize, now: Instant, restart: bool) -> bool {
        let name = self.domain(index).name.to_string();
        match self.start(index) {
            Ok(()) => {
                if restart {
                    self.host.event("restarted", &[("name", name.clone())]);
                    self.rebuild_frontends_of(index, &name, now);
                }
                true
            }
            Err(e) if restart => {
                self.info(format!("restarting '{name}': {e}"));
                false
            }
            Err(e) => {
                self.info(e.to_string());
                self.host.event("build-failed", &[("name", name)]);
                false
            }
        }
    }

    /// The driver domains (domain indices) serving `index`'s PV devices that do not serve yet:
    /// still waiting to be built themselves, or running without its [`serving_node`]. One that is not
    /// running at all (given up, failed to build) is not waited for; the frontend's devices it
    /// would serve are then left out, with a message, when the frontend is built.
    fn unready_backends(&mut self, index: usize) -> Vec<usize> {
        let Some(xs) = self.xenstore.as_mut() else {
            return Vec::new();
        };
        let d = &self.config.domains[index];
        let mut backends: Vec<usize> = d.backends().map(usize::from).collect();
        backends.sort_unstable();
        backends.dedup();
        backends.retain(|&b| {
            if self.waiting.iter().any(|w| w.index == b) {
                return true;
            }
            let Some(g) = self.guests.iter().find(|g| g.index == b) else {
                return false;
            };
            let node = serving_node(g.domid.get());
            let serves = xs.store.read_opt(NO_TX, &node).ok().flatten();
            serves.as_deref() != Some("1")
        });
        backends
    }

    /// `'a'`, `'a' and 'b'`, `'a', 'b' and 'c'`.
    fn names(&self, indices: &[usize]) -> String {
        let quoted: Vec<String> = indices
            .iter()
            .map(|&i| format!("'{}'", self.domain(i).name))
            .collect();
        match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}
