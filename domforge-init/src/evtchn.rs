//! `/dev/xen/evtchn`: event channels of the control domain, from user space (Linux
//! `drivers/xen/evtchn.c`, ABI in `include/uapi/xen/evtchn.h`).
//!
//! * Binding returns the local port as the ioctl's return value.
//! * `read()` yields the ports that fired as native `unsigned int`s; each stays masked until its number
//!   is written back (`write()` unmasks), so a port cannot flood the reader.
//! * Closing the file unbinds everything bound through it.
//!
//! [`EventChannel`] is the seam the supervisor uses; [`Evtchn`] implements it over the device, and
//! the tests' `fake::FakeEvtchn` over domctl's `FakeXen`.

use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";

/// `VIRQ_DOM_EXC` 3 (`xen/include/public/xen.h`): "(DOM0) Exceptional event for some domain", raised
/// when a domain shuts down or dies; global, bindable by the control domain only.
pub const VIRQ_DOM_EXC: u32 = 3;

/// `struct ioctl_evtchn_bind_virq { unsigned int virq; }`.
#[repr(C)]
pub struct BindVirq {
    pub virq: u32,
}
/// `struct ioctl_evtchn_bind_interdomain { unsigned int remote_domain, remote_port; }`.
#[repr(C)]
pub struct BindInterdomain {
    pub remote_domain: u32,
    pub remote_port: u32,
}
/// `struct ioctl_evtchn_unbind { unsigned int port; }` and `struct ioctl_evtchn_notify` (same shape).
#[repr(C)]
pub struct Port {
    pub port: u32,
}
const _: () = assert!(size_of::<BindInterdomain>() == 8 && size_of::<Port>() == 4);

mod ioctls {
    use super::{BindInterdomain, BindVirq, Port};
    // All are `_IOC(_IOC_NONE, 'E', nr, sizeof(struct …))` — direction NONE with a size, like privcmd's,
    // so the `_bad` macros with an explicitly built number are needed.
    nix::ioctl_readwrite_bad!(
        bind_virq,
        nix::ioc!(nix::sys::ioctl::NONE, b'E', 0, size_of::<BindVirq>()),
        BindVirq
    );
    nix::ioctl_readwrite_bad!(
        bind_interdomain,
        nix::ioc!(nix::sys::ioctl::NONE, b'E', 1, size_of::<BindInterdomain>()),
        BindInterdomain
    );
    nix::ioctl_readwrite_bad!(
        unbind,
        nix::ioc!(nix::sys::ioctl::NONE, b'E', 3, size_of::<Port>()),
        Port
    );
    nix::ioctl_readwrite_bad!(
        notify,
        nix::ioc!(nix::sys::ioctl::NONE, b'E', 4, size_of::<Port>()),
        Port
    );
}

#[derive(Debug, thiserror::Error)]
pub enum EvtchnError {
    #[error("opening {EVTCHN_PATH} (is the xen-evtchn driver loaded?): {0}")]
    Open(std::io::Error),
    #[error("{what}: {errno}")]
    Ioctl { what: String, errno: Errno },
    #[error("reading pending ports: {0}")]
    Io(#[from] std::io::Error),
}

/// The control domain's event channels, as the supervisor needs them.
pub trait EventChannel {
    /// Binds a virtual IRQ; returns the local port.
    fn bind_virq(&mut self, virq: u32) -> Result<u32, EvtchnError>;
    /// Binds to `remote_port` of `remote_domain` (an unbound port it allocated for us); returns the
    /// local port.
    fn bind_interdomain(
        &mut self,
        remote_domain: u16,
        remote_port: u32,
    ) -> Result<u32, EvtchnError>;
    fn unbind(&mut self, port: u32) -> Result<(), EvtchnError>;
    /// Signals the remote end of `port`.
    fn notify(&mut self, port: u32) -> Result<(), EvtchnError>;
    /// Waits up to `timeout` for an event; returns the local ports that fired (possibly none),
    /// already unmasked again.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<u32>, EvtchnError>;
}

/// An open `/dev/xen/evtchn`.
pub struct Evtchn {
    file: File,
}

impl Evtchn {
    pub fn open() -> Result<Self, EvtchnError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(
                nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits(),
            )
            .open(EVTCHN_PATH)
            .map_err(EvtchnError::Open)?;
        Ok(Self { file })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn port_of(r: nix::Result<i32>, what: impl FnOnce() -> String) -> Result<u32, EvtchnError> {
        match r {
            Ok(p) => u32::try_from(p).map_err(|_| EvtchnError::Ioctl {
                what: what(),
                errno: Errno::EINVAL,
            }),
            Err(errno) => Err(EvtchnError::Ioctl {
                what: what(),
                errno,
            }),
        }
    }

    /// Binds a virtual IRQ; returns the local port.
    pub fn bind_virq(&self, virq: u32) -> Result<u32, EvtchnError> {
        let mut arg = BindVirq { virq };
        // SAFETY: the fd is /dev/xen/evtchn and `arg` is the struct this request number encodes.
        let r = unsafe { ioctls::bind_virq(self.file.as_raw_fd(), &mut arg) };
        Self::port_of(r, || format!("IOCTL_EVTCHN_BIND_VIRQ {virq}"))
    }

    /// Binds to `remote_port` of `remote_domain` (an unbound port it allocated for us); returns the
    /// local port.
    pub fn bind_interdomain(
        &self,
        remote_domain: u16,
        remote_port: u32,
    ) -> Result<u32, EvtchnError> {
        let mut arg = BindInterdomain {
            remote_domain: u32::from(remote_domain),
            remote_port,
        };
        // SAFETY: as above.
        let r = unsafe { ioctls::bind_interdomain(self.file.as_raw_fd(), &mut arg) };
        Self::port_of(r, || {
            format!("IOCTL_EVTCHN_BIND_INTERDOMAIN to domain {remote_domain} port {remote_port}")
        })
    }

    pub fn unbind(&self, port: u32) -> Result<(), EvtchnError> {
        let mut arg = Port { port };
        // SAFETY: as above.
        let r = unsafe { ioctls::unbind(self.file.as_raw_fd(), &mut arg) };
        Self::port_of(r, || format!("IOCTL_EVTCHN_UNBIND {port}")).map(drop)
    }

    pub fn notify(&self, port: u32) -> Result<(), EvtchnError> {
        let mut arg = Port { port };
        // SAFETY: as above.
        let r = unsafe { ioctls::notify(self.file.as_raw_fd(), &mut arg) };
        Self::port_of(r, || format!("IOCTL_EVTCHN_NOTIFY {port}")).map(drop)
    }

    /// Ports that fired since the last call (empty when none), already unmasked again.
    pub fn pending(&mut self) -> Result<Vec<u32>, EvtchnError> {
        let mut buf = [0u8; 4 * 64];
        let n = match self.file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let ports: Vec<u32> = buf[..n - n % 4]
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut unmask = Vec::with_capacity(ports.len() * 4);
        for p in &ports {
            unmask.extend_from_slice(&p.to_ne_bytes());
        }
        if !unmask.is_empty() {
            self.file.write_all(&unmask)?;
        }
        Ok(ports)
    }
}

impl EventChannel for Evtchn {
    fn bind_virq(&mut self, virq: u32) -> Result<u32, EvtchnError> {
        Evtchn::bind_virq(self, virq)
    }

    fn bind_interdomain(
        &mut self,
        remote_domain: u16,
        remote_port: u32,
    ) -> Result<u32, EvtchnError> {
        Evtchn::bind_interdomain(self, remote_domain, remote_port)
    }

    fn unbind(&mut self, port: u32) -> Result<(), EvtchnError> {
        Evtchn::unbind(self, port)
    }

    fn notify(&mut self, port: u32) -> Result<(), EvtchnError> {
        Evtchn::notify(self, port)
    }

    /// `poll(2)` on the device (one `read()` would block; the fd is non-blocking), then the ports.
    /// A failed or interrupted poll only shortens the wait: the caller looks at rings and domain
    /// states on every return anyway.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<u32>, EvtchnError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        self.pending()
    }
}

/// An event channel device for tests, coherent with domctl's `FakeXen`: an interdomain bind
/// succeeds only for a port the remote domain allocated unbound for domain 0 (as
/// `evtchn_bind_interdomain()` in `xen/common/event_channel.c` refuses anything else with
/// `-EINVAL`), and only once.
#[cfg(test)]
pub mod fake {
    use super::{EventChannel, EvtchnError};
    use domctl::fake::FakeXen;
    use nix::errno::Errno;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::time::Duration;

    /// What a local port is bound to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Binding {
        Virq(u32),
        Interdomain { domid: u16, port: u32 },
    }

    #[derive(Default)]
    struct State {
        next_port: u32,
        bound: BTreeMap<u32, Binding>,
        fired: Vec<u32>,
        notified: Vec<u32>,
        refuse_virq: bool,
    }

    /// Cloning shares the state, so a test keeps a handle while the supervisor owns one.
    #[derive(Clone)]
    pub struct FakeEvtchn {
        xen: FakeXen,
        state: Rc<RefCell<State>>,
    }

    impl FakeEvtchn {
        pub fn new(xen: FakeXen) -> Self {
            Self {
                xen,
                state: Rc::new(RefCell::new(State {
                    next_port: 1,
                    ..Default::default()
                })),
            }
        }

        /// Makes `bind_virq` fail (an unprivileged or old kernel).
        pub fn refuse_virq(&self) {
            self.state.borrow_mut().refuse_virq = true;
        }

        /// The remote end signals: queues the local port bound to (`domid`, `port`). Returns it.
        pub fn fire_remote(&self, domid: u16, port: u32) -> Option<u32> {
            let local = self.local_port(Binding::Interdomain { domid, port })?;
            self.state.borrow_mut().fired.push(local);
            Some(local)
        }

        /// Xen raises a virtual IRQ: queues its local port if bound.
        pub fn fire_virq(&self, virq: u32) -> Option<u32> {
            let local = self.local_port(Binding::Virq(virq))?;
            self.state.borrow_mut().fired.push(local);
            Some(local)
        }

        pub fn local_port(&self, binding: Binding) -> Option<u32> {
            let st = self.state.borrow();
            st.bound
                .iter()
                .find(|(_, b)| **b == binding)
                .map(|(p, _)| *p)
        }

        pub fn bindings(&self) -> BTreeMap<u32, Binding> {
            self.state.borrow().bound.clone()
        }

        /// Every `notify` so far, in order (local ports).
        pub fn notified(&self) -> Vec<u32> {
            self.state.borrow().notified.clone()
        }

        fn refuse(what: String, errno: Errno) -> EvtchnError {
            EvtchnError::Ioctl { what, errno }
        }

        fn bind(&self, b: Binding) -> u32 {
            let mut st = self.state.borrow_mut();
            let port = st.next_port;
            st.next_port += 1;
            st.bound.insert(port, b);
            port
        }
    }

    impl EventChannel for FakeEvtchn {
        fn bind_virq(&mut self, virq: u32) -> Result<u32, EvtchnError> {
            if self.state.borrow().refuse_virq {
                return Err(Self::refuse(
                    format!("IOCTL_EVTCHN_BIND_VIRQ {virq}"),
                    Errno::EPERM,
                ));
            }
            Ok(self.bind(Binding::Virq(virq)))
        }

        fn bind_interdomain(
            &mut self,
            remote_domain: u16,
            remote_port: u32,
        ) -> Result<u32, EvtchnError> {
            let b = Binding::Interdomain {
                domid: remote_domain,
                port: remote_port,
            };
            let allocated_for_us = self
                .xen
                .domain(remote_domain)
                .is_some_and(|d| d.evtchns.get(&remote_port) == Some(&0));
            if !allocated_for_us || self.local_port(b).is_some() {
                return Err(Self::refuse(
                    format!(
                        "IOCTL_EVTCHN_BIND_INTERDOMAIN to domain {remote_domain} port {remote_port}"
                    ),
                    Errno::EINVAL,
                ));
            }
            Ok(self.bind(b))
        }

        fn unbind(&mut self, port: u32) -> Result<(), EvtchnError> {
            let mut st = self.state.borrow_mut();
            st.fired.retain(|p| *p != port);
            st.bound
                .remove(&port)
                .map(drop)
                .ok_or_else(|| Self::refuse(format!("IOCTL_EVTCHN_UNBIND {port}"), Errno::ENOTCONN))
        }

        fn notify(&mut self, port: u32) -> Result<(), EvtchnError> {
            let mut st = self.state.borrow_mut();
            if !st.bound.contains_key(&port) {
                return Err(Self::refuse(
                    format!("IOCTL_EVTCHN_NOTIFY {port}"),
                    Errno::ENOTCONN,
                ));
            }
            st.notified.push(port);
            Ok(())
        }

        /// Never sleeps: returns what was fired since the last call.
        fn wait(&mut self, _timeout: Duration) -> Result<Vec<u32>, EvtchnError> {
            Ok(std::mem::take(&mut self.state.borrow_mut().fired))
        }
    }
}
