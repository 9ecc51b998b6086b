//! `/dev/xen/evtchn`: event channels of the control domain, from user space (Linux
//! `drivers/xen/evtchn.c`, ABI in `include/uapi/xen/evtchn.h`).
//!
//! * Binding returns the local port as the ioctl's return value.
//! * `read()` yields the ports that fired as native `unsigned int`s; each stays masked until its number
//!   is written back (`write()` unmasks), so a port cannot flood the reader.
//! * Closing the file unbinds everything bound through it.

use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

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
