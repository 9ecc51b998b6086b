//! A synchronous client: one request at a time, replies matched by `req_id`; watch events that
//! arrive between (xenstored sends them whenever a watched path changes) are queued for
//! [`Client::next_event`].

use std::collections::VecDeque;
use std::io::{Read, Write};

use crate::error::{Errno, XsError};
use crate::wire::{HEADER_LEN, Header, MsgType, PAYLOAD_MAX, Perm, split_strings};

/// A transaction id (`tx_id` of the header); [`NO_TX`] outside any transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tx(pub u32);

/// Requests outside a transaction (`XBT_NULL`).
pub const NO_TX: Tx = Tx(0);

/// A fired watch: the path that changed and the token given to [`Client::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// A xenstore connection over any byte stream: `UnixStream` to `/run/xenstored/socket` in the
/// control domain, or the `/dev/xen/xenbus` character device in a domU.
pub struct Client<T> {
    io: T,
    next_req: u32,
    events: VecDeque<WatchEvent>,
}

fn payload(parts: &[&str], trailing_nul: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        out.extend_from_slice(p.as_bytes());
        if trailing_nul || i + 1 < parts.len() {
            out.push(0);
        }
    }
    out
}

impl<T: Read + Write> Client<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            next_req: 1,
            events: VecDeque::new(),
        }
    }

    fn send(&mut self, ty: MsgType, tx: Tx, body: &[u8]) -> Result<u32, XsError> {
        if body.len() > PAYLOAD_MAX {
            return Err(XsError::TooLong { len: body.len() });
        }
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let h = Header {
            ty: ty as u32,
            req_id,
            tx_id: tx.0,
            len: body.len() as u32,
        };
        // One write: /dev/xen/xenbus takes a message per write(2) (Linux xenbus_dev_frontend.c
        // accumulates, but a single buffer is the simplest contract for both transports).
        let mut msg = h.encode().to_vec();
        msg.extend_from_slice(body);
        self.io.write_all(&msg)?;
        self.io.flush()?;
        Ok(req_id)
    }

    fn recv(&mut self) -> Result<(Header, Vec<u8>), XsError> {
        let mut hb = [0u8; HEADER_LEN];
        self.io.read_exact(&mut hb)?;
        let h = Header::decode(&hb);
        if h.len as usize > PAYLOAD_MAX {
            return Err(XsError::Protocol(format!("reply of {} bytes", h.len)));
        }
        let mut body = vec![0u8; h.len as usize];
        self.io.read_exact(&mut body)?;
        Ok((h, body))
    }

    /// Sends one request and returns its reply payload; `XS_ERROR` becomes [`XsError::Daemon`].
    fn call(&mut self, ty: MsgType, tx: Tx, body: &[u8], what: &str) -> Result<Vec<u8>, XsError> {
        let req_id = self.send(ty, tx, body)?;
        loop {
            let (h, reply) = self.recv()?;
            if h.ty == MsgType::WatchEvent as u32 {
                let mut parts = split_strings(&reply).into_iter();
                let path = parts.next().unwrap_or_default();
                let token = parts.next().unwrap_or_default();
                self.events.push_back(WatchEvent { path, token });
                continue;
            }
            if h.req_id != req_id {
                return Err(XsError::Protocol(format!(
                    "reply for request {} while waiting for {req_id}",
                    h.req_id
                )));
            }
            if h.ty == MsgType::Error as u32 {
                let name = String::from_utf8_lossy(reply.strip_suffix(&[0]).unwrap_or(&reply))
                    .into_owned();
                return Err(XsError::Daemon {
                    op: ty,
                    what: what.to_owned(),
                    errno: Errno::from_name(&name),
                });
            }
            if h.ty != ty as u32 {
                return Err(XsError::Protocol(format!(
                    "reply type {} to a {ty:?} request",
                    h.ty
                )));
            }
            return Ok(reply);
        }
    }

    fn ack(&mut self, ty: MsgType, tx: Tx, body: &[u8], what: &str) -> Result<(), XsError> {
        let reply = self.call(ty, tx, body, what)?;
        if reply != b"OK\0" && reply != b"OK" {
            return Err(XsError::Protocol(format!(
                "{ty:?} {what}: expected OK, got {:?}",
                String::from_utf8_lossy(&reply)
            )));
        }
        Ok(())
    }

    /// `XS_READ`: the value of `path` (bytes, as stored).
    pub fn read(&mut self, tx: Tx, path: &str) -> Result<Vec<u8>, XsError> {
        self.call(MsgType::Read, tx, &payload(&[path], true), path)
    }

    /// `XS_READ` as text; `None` when the node does not exist.
    pub fn read_opt(&mut self, tx: Tx, path: &str) -> Result<Option<String>, XsError> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `XS_WRITE`: `path\0value` (the value is not NUL-terminated, xenstore.txt "WRITE").
    pub fn write(&mut self, tx: Tx, path: &str, value: &[u8]) -> Result<(), XsError> {
        let mut body = payload(&[path], true);
        body.extend_from_slice(value);
        self.ack(MsgType::Write, tx, &body, path)
    }

    /// `XS_MKDIR`: creates `path` (and missing parents) with an empty value; no error if present.
    pub fn mkdir(&mut self, tx: Tx, path: &str) -> Result<(), XsError> {
        self.ack(MsgType::Mkdir, tx, &payload(&[path], true), path)
    }

    /// `XS_RM`: removes `path` and everything below.
    pub fn rm(&mut self, tx: Tx, path: &str) -> Result<(), XsError> {
        self.ack(MsgType::Rm, tx, &payload(&[path], true), path)
    }

    /// `XS_DIRECTORY`: the names of `path`'s children.
    pub fn directory(&mut self, tx: Tx, path: &str) -> Result<Vec<String>, XsError> {
        let reply = self.call(MsgType::Directory, tx, &payload(&[path], true), path)?;
        Ok(split_strings(&reply))
    }

    /// `XS_SET_PERMS`: `path\0perm\0perm\0…` (first = owner and default access).
    pub fn set_perms(&mut self, tx: Tx, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        if perms.is_empty() {
            return Err(XsError::Protocol(format!(
                "{path}: an empty permission list"
            )));
        }
        let texts: Vec<String> = perms.iter().map(|p| p.to_wire()).collect();
        let mut parts = vec![path];
        parts.extend(texts.iter().map(String::as_str));
        self.ack(MsgType::SetPerms, tx, &payload(&parts, true), path)
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms(&mut self, tx: Tx, path: &str) -> Result<Vec<Perm>, XsError> {
        let reply = self.call(MsgType::GetPerms, tx, &payload(&[path], true), path)?;
        split_strings(&reply)
            .iter()
            .map(|s| Perm::parse(s).ok_or_else(|| XsError::Protocol(format!("permission {s:?}"))))
            .collect()
    }

    /// `XS_TRANSACTION_START`: the reply is the new id in decimal.
    pub fn transaction_start(&mut self) -> Result<Tx, XsError> {
        let reply = self.call(MsgType::TransactionStart, NO_TX, b"\0", "transaction")?;
        let text = String::from_utf8_lossy(reply.strip_suffix(&[0]).unwrap_or(&reply)).into_owned();
        text.parse()
            .map(Tx)
            .map_err(|_| XsError::Protocol(format!("transaction id {text:?}")))
    }

    /// `XS_TRANSACTION_END` with `T` (commit) or `F` (abort). A commit that conflicted with
    /// another writer fails with `EAGAIN` ([`XsError::is_again`]): redo the whole transaction.
    pub fn transaction_end(&mut self, tx: Tx, commit: bool) -> Result<(), XsError> {
        let flag = if commit { "T" } else { "F" };
        self.ack(
            MsgType::TransactionEnd,
            tx,
            &payload(&[flag], true),
            "transaction end",
        )
    }

    /// Runs `body` in a transaction, retried on `EAGAIN` up to `attempts` times.
    pub fn in_transaction<R>(
        &mut self,
        attempts: u32,
        mut body: impl FnMut(&mut Self, Tx) -> Result<R, XsError>,
    ) -> Result<R, XsError> {
        let mut left = attempts.max(1);
        loop {
            let tx = self.transaction_start()?;
            let out = match body(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    // Best effort: the original error matters more than the abort's.
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(out),
                Err(e) if e.is_again() && left > 1 => left -= 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// `XS_WATCH`: xenstored fires it once right away, then on every change at or below `path`.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.ack(MsgType::Watch, NO_TX, &payload(&[path, token], true), path)
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.ack(
            MsgType::Unwatch,
            NO_TX,
            &payload(&[path, token], true),
            path,
        )
    }

    /// The next watch event, blocking until one arrives (queued ones first).
    pub fn next_event(&mut self) -> Result<WatchEvent, XsError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        let (h, body) = self.recv()?;
        if h.ty != MsgType::WatchEvent as u32 {
            return Err(XsError::Protocol(format!(
                "unsolicited message type {} outside a request",
                h.ty
            )));
        }
        let mut parts = split_strings(&body).into_iter();
        Ok(WatchEvent {
            path: parts.next().unwrap_or_default(),
            token: parts.next().unwrap_or_default(),
        })
    }

    /// Watch events already received (without blocking).
    pub fn take_events(&mut self) -> Vec<WatchEvent> {
        self.events.drain(..).collect()
    }

    /// `XS_INTRODUCE domid\0mfn\0port\0`: tells xenstored that `domid`'s store ring is the page
    /// at guest frame `gfn` (an MFN for PV, a GFN for PVH/HVM/ARM: xenstored maps it through
    /// `xengnttab` GNTTAB_RESERVED_XENSTORE or foreign mapping) and its event channel is
    /// `evtchn` (the unbound port the domain was given, remote = xenstored's domain).
    pub fn introduce(&mut self, domid: u16, gfn: u64, evtchn: u32) -> Result<(), XsError> {
        let (d, g, e) = (domid.to_string(), gfn.to_string(), evtchn.to_string());
        self.ack(
            MsgType::Introduce,
            NO_TX,
            &payload(&[&d, &g, &e], true),
            &format!("domain {domid}"),
        )
    }

    /// `XS_IS_DOMAIN_INTRODUCED`: reply `T` or `F`.
    pub fn is_domain_introduced(&mut self, domid: u16) -> Result<bool, XsError> {
        let d = domid.to_string();
        let reply = self.call(
            MsgType::IsDomainIntroduced,
            NO_TX,
            &payload(&[&d], true),
            &d,
        )?;
        Ok(reply.first() == Some(&b'T'))
    }

    /// `XS_RELEASE`: xenstored forgets the domain (after it is destroyed).
    pub fn release(&mut self, domid: u16) -> Result<(), XsError> {
        let d = domid.to_string();
        self.ack(MsgType::Release, NO_TX, &payload(&[&d], true), &d)
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, XsError> {
        let d = domid.to_string();
        let reply = self.call(MsgType::GetDomainPath, NO_TX, &payload(&[&d], true), &d)?;
        Ok(String::from_utf8_lossy(reply.strip_suffix(&[0]).unwrap_or(&reply)).into_owned())
    }

    /// The transport back (for tests: the fake's state).
    pub fn into_inner(self) -> T {
        self.io
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}
