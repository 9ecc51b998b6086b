//! An in-memory xenstored speaking the wire format, for unit tests of code that talks xenstore
//! (the client here, domforge-init's introduction and device sequences). It implements the parts
//! of docs/misc/xenstore.txt those users rely on:
//!
//! - a tree of nodes with values and permissions; a node created implicitly (as a missing parent
//!   or by `WRITE`/`MKDIR`) takes its parent's permissions, with the creator as owner when the
//!   creator is not domain 0 (xenstored `construct_node`);
//! - permission checks for a non-privileged caller ([`FakeXenstored::with_caller`]): the owner and
//!   domain 0 may do anything, others get the access of their entry, else the first entry's;
//! - transactions on a private copy; a commit fails with `EAGAIN` when anything was committed
//!   since the transaction began (xenstored is finer grained: a conflict needs an overlapping
//!   node; the fake is stricter, which only makes retries show up sooner);
//! - watches: fired once when set, then for every change at or below their path, and the special
//!   `@introduceDomain` / `@releaseDomain` paths;
//! - `INTRODUCE`, `IS_DOMAIN_INTRODUCED`, `RELEASE`, `GET_DOMAIN_PATH`.
//!
//! Every request is logged ([`FakeXenstored::log`]) so a test can assert the order of operations.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::rc::Rc;

use crate::wire::{Access, HEADER_LEN, Header, MsgType, Perm, split_strings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNode {
    pub value: Vec<u8>,
    pub perms: Vec<Perm>,
}

type Tree = BTreeMap<String, FakeNode>;

/// One logged request: its type, transaction id and NUL-separated arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub ty: MsgType,
    pub tx: u32,
    pub args: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    caller: u16,
    tree: Tree,
    generation: u64,
    txs: BTreeMap<u32, (Tree, u64)>,
    next_tx: u32,
    watches: Vec<(String, String)>,
    introduced: BTreeMap<u16, (u64, u32)>,
    input: Vec<u8>,
    output: VecDeque<u8>,
    log: Vec<Logged>,
}

/// The fake daemon; clones share one state, so a test keeps a handle while a client owns another.
#[derive(Debug, Clone)]
pub struct FakeXenstored(Rc<RefCell<Inner>>);

impl Default for FakeXenstored {
    fn default() -> Self {
        Self::new()
    }
}

fn root() -> Tree {
    let mut t = Tree::new();
    t.insert(
        "/".into(),
        FakeNode {
            value: Vec::new(),
            perms: vec![Perm::new(0, Access::None)],
        },
    );
    t
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    Some(match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    })
}

/// `path` is `base` or below it, component-wise.
fn at_or_below(path: &str, base: &str) -> bool {
    path == base || base == "/" || path.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

type Reply = Result<Vec<u8>, &'static str>;

impl FakeXenstored {
    /// A daemon with only `/`, serving domain 0 (privileged).
    pub fn new() -> Self {
        Self(Rc::new(RefCell::new(Inner {
            tree: root(),
            next_tx: 1,
            ..Inner::default()
        })))
    }

    /// The same store, seen by another connection of domain `domid` (relative paths resolve to
    /// `/local/domain/<domid>/…`; permissions apply unless it is 0).
    pub fn with_caller(&self, domid: u16) -> Self {
        self.0.borrow_mut().caller = domid;
        self.clone()
    }

    pub fn node(&self, path: &str) -> Option<FakeNode> {
        self.0.borrow().tree.get(path).cloned()
    }

    pub fn value(&self, path: &str) -> Option<String> {
        self.node(path)
            .map(|n| String::from_utf8_lossy(&n.value).into_owned())
    }

    pub fn log(&self) -> Vec<Logged> {
        self.0.borrow().log.clone()
    }

    pub fn introduced(&self) -> BTreeMap<u16, (u64, u32)> {
        self.0.borrow().introduced.clone()
    }

    /// Fires the watches of `path` as if another client changed it (for tests of watchers).
    pub fn poke(&self, path: &str, value: &str) {
        let mut s = self.0.borrow_mut();
        let perms = s.inherited_perms(path);
        s.tree.insert(
            path.into(),
            FakeNode {
                value: value.as_bytes().to_vec(),
                perms,
            },
        );
        s.generation += 1;
        s.fire(path);
    }
}

impl Inner {
    fn abs(&self, path: &str) -> Result<String, &'static str> {
        if path.is_empty() || path.ends_with('/') && path != "/" || path.contains("//") {
            return Err("EINVAL");
        }
        Ok(if path.starts_with('/') || path.starts_with('@') {
            path.to_owned()
        } else {
            format!("/local/domain/{}/{path}", self.caller)
        })
    }

    fn access(&self, perms: &[Perm]) -> Access {
        if self.caller == 0 || perms.first().is_some_and(|p| p.domid == self.caller) {
            return Access::Both;
        }
        perms
            .iter()
            .skip(1)
            .find(|p| p.domid == self.caller)
            .or(perms.first())
            .map_or(Access::None, |p| p.access)
    }

    fn inherited_perms(&self, path: &str) -> Vec<Perm> {
        let mut p = parent_of(path);
        while let Some(dir) = p {
            if let Some(n) = self.tree.get(dir) {
                let mut perms = n.perms.clone();
                if self.caller != 0 {
                    perms[0].domid = self.caller;
                }
                return perms;
            }
            p = parent_of(dir);
        }
        vec![Perm::new(self.caller, Access::None)]
    }

    fn fire(&mut self, path: &str) {
        let hits: Vec<(String, String)> = self
            .watches
            .iter()
            .filter(|(w, _)| at_or_below(path, w) || (!w.starts_with('@') && at_or_below(w, path)))
            .cloned()
            .collect();
        for (w, token) in hits {
            // The event names the changed node, or the watched one when a parent was removed.
            let p = if at_or_below(path, &w) { path } else { &w };
            self.event(p, &token);
        }
    }

    fn event(&mut self, path: &str, token: &str) {
        let mut body = path.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(token.as_bytes());
        body.push(0);
        self.reply(MsgType::WatchEvent as u32, 0, 0, &body);
    }

    fn reply(&mut self, ty: u32, req_id: u32, tx_id: u32, body: &[u8]) {
        let h = Header {
            ty,
            req_id,
            tx_id,
            len: body.len() as u32,
        };
        self.output.extend(h.encode());
        self.output.extend(body.iter().copied());
    }

    /// The tree a request works on and whether it is the committed one.
    fn tree_mut(&mut self, tx: u32) -> Result<(&mut Tree, bool), &'static str> {
        if tx == 0 {
            Ok((&mut self.tree, true))
        } else {
            self.txs
                .get_mut(&tx)
                .map(|(t, _)| (t, false))
                .ok_or("ENOENT")
        }
    }

    fn create(&mut self, tx: u32, path: &str, value: Option<Vec<u8>>) -> Result<(), &'static str> {
        // Every missing ancestor first, each inheriting from its parent.
        let mut chain = vec![path.to_owned()];
        let mut p = parent_of(path);
        while let Some(dir) = p {
            chain.push(dir.to_owned());
            p = parent_of(dir);
        }
        let (tree, _) = self.tree_mut(tx)?;
        let existing_ancestor = chain
            .iter()
            .find(|c| tree.contains_key(c.as_str()))
            .cloned();
        let perms_at = existing_ancestor
            .as_deref()
            .and_then(|a| tree.get(a))
            .map(|n| n.perms.clone())
            .unwrap_or_else(|| vec![Perm::new(0, Access::None)]);
        if self.access(&perms_at) == Access::None || !self.access(&perms_at).can_write() {
            // Writing an existing node needs write access to it; creating needs it on the parent.
            return Err("EACCES");
        }
        let caller = self.caller;
        let (tree, _) = self.tree_mut(tx)?;
        for c in chain.iter().rev() {
            if !tree.contains_key(c.as_str()) {
                let parent = parent_of(c)
                    .and_then(|d| tree.get(d))
                    .map(|n| n.perms.clone());
                let mut perms = parent.unwrap_or_else(|| vec![Perm::new(0, Access::None)]);
                if caller != 0 {
                    perms[0].domid = caller;
                }
                tree.insert(
                    c.clone(),
                    FakeNode {
                        value: Vec::new(),
                        perms,
                    },
                );
            }
        }
        if let Some(v) = value {
            tree.get_mut(path).expect("created above").value = v;
        }
        Ok(())
    }

    fn changed(&mut self, committed: bool, path: &str) {
        if committed {
            self.generation += 1;
            self.fire(path);
        }
    }

    fn handle(&mut self, ty: MsgType, tx: u32, body: &[u8]) -> Reply {
        let args = split_strings(body);
        let arg = |i: usize| args.get(i).cloned().ok_or("EINVAL");
        let ok = || Ok(b"OK\0".to_vec());
        match ty {
            MsgType::Read | MsgType::Directory | MsgType::GetPerms => {
                let path = self.abs(&arg(0)?)?;
                let (tree, _) = self.tree_mut(tx)?;
                let node = tree.get(&path).cloned().ok_or("ENOENT")?;
                if !self.access(&node.perms).can_read() {
                    return Err("EACCES");
                }
                let (tree, _) = self.tree_mut(tx)?;
                Ok(match ty {
                    MsgType::Read => node.value,
                    MsgType::Directory => {
                        let mut out = Vec::new();
                        for k in tree.keys().filter(|k| parent_of(k) == Some(path.as_str())) {
                            out.extend_from_slice(k.rsplit('/').next().unwrap_or("").as_bytes());
                            out.push(0);
                        }
                        out
                    }
                    _ => node
                        .perms
                        .iter()
                        .flat_map(|p| {
                            let mut s = p.to_wire().into_bytes();
                            s.push(0);
                            s
                        })
                        .collect(),
                })
            }
            MsgType::Write => {
                let split = body.iter().position(|b| *b == 0).ok_or("EINVAL")?;
                let path = self.abs(&String::from_utf8_lossy(&body[..split]))?;
                self.create(tx, &path, Some(body[split + 1..].to_vec()))?;
                let committed = tx == 0;
                self.changed(committed, &path);
                ok()
            }
            MsgType::Mkdir => {
                let path = self.abs(&arg(0)?)?;
                self.create(tx, &path, None)?;
                self.changed(tx == 0, &path);
                ok()
            }
            MsgType::Rm => {
                let path = self.abs(&arg(0)?)?;
                let (tree, _) = self.tree_mut(tx)?;
                if !tree.contains_key(&path) {
                    return Err("ENOENT");
                }
                tree.retain(|k, _| !at_or_below(k, &path) || path == "/" && k == "/");
                self.changed(tx == 0, &path);
                ok()
            }
            MsgType::SetPerms => {
                let path = self.abs(&arg(0)?)?;
                let perms = args[1..]
                    .iter()
                    .map(|s| Perm::parse(s).ok_or("EINVAL"))
                    .collect::<Result<Vec<_>, _>>()?;
                if perms.is_empty() {
                    return Err("EINVAL");
                }
                let caller = self.caller;
                let (tree, _) = self.tree_mut(tx)?;
                let node = tree.get_mut(&path).ok_or("ENOENT")?;
                if caller != 0 && node.perms[0].domid != caller {
                    return Err("EACCES");
                }
                node.perms = perms;
                self.changed(tx == 0, &path);
                ok()
            }
            MsgType::TransactionStart => {
                let id = self.next_tx;
                self.next_tx += 1;
                self.txs.insert(id, (self.tree.clone(), self.generation));
                Ok(format!("{id}\0").into_bytes())
            }
            MsgType::TransactionEnd => {
                let (copy, generation) = self.txs.remove(&tx).ok_or("ENOENT")?;
                if arg(0)? != "T" {
                    return ok();
                }
                if generation != self.generation {
                    return Err("EAGAIN");
                }
                let changed: Vec<String> = copy
                    .iter()
                    .filter(|(k, v)| self.tree.get(*k) != Some(v))
                    .map(|(k, _)| k.clone())
                    .chain(self.tree.keys().filter(|k| !copy.contains_key(*k)).cloned())
                    .collect();
                self.tree = copy;
                self.generation += 1;
                for p in changed {
                    self.fire(&p);
                }
                ok()
            }
            MsgType::Watch => {
                let path = self.abs(&arg(0)?)?;
                let token = arg(1)?;
                self.watches.push((path.clone(), token.clone()));
                // xenstored queues the initial event after the reply; the client must cope with
                // events at any point, so the fake sends it first.
                self.event(&path, &token);
                ok()
            }
            MsgType::Unwatch => {
                let path = self.abs(&arg(0)?)?;
                let token = arg(1)?;
                let before = self.watches.len();
                self.watches.retain(|w| *w != (path.clone(), token.clone()));
                if before == self.watches.len() {
                    return Err("ENOENT");
                }
                ok()
            }
            MsgType::Introduce | MsgType::Release | MsgType::IsDomainIntroduced => {
                if self.caller != 0 {
                    return Err("EACCES");
                }
                let domid: u16 = arg(0)?.parse().map_err(|_| "EINVAL")?;
                match ty {
                    MsgType::Introduce => {
                        let gfn = arg(1)?.parse().map_err(|_| "EINVAL")?;
                        let port = arg(2)?.parse().map_err(|_| "EINVAL")?;
                        self.introduced.insert(domid, (gfn, port));
                        self.fire("@introduceDomain");
                        ok()
                    }
                    MsgType::Release => {
                        self.introduced.remove(&domid).ok_or("ENOENT")?;
                        self.fire("@releaseDomain");
                        ok()
                    }
                    _ => Ok(if self.introduced.contains_key(&domid) {
                        b"T\0".to_vec()
                    } else {
                        b"F\0".to_vec()
                    }),
                }
            }
            MsgType::GetDomainPath => Ok(format!("/local/domain/{}\0", arg(0)?).into_bytes()),
            _ => Err("ENOSYS"),
        }
    }

    fn pump(&mut self) {
        while self.input.len() >= HEADER_LEN {
            let mut hb = [0u8; HEADER_LEN];
            hb.copy_from_slice(&self.input[..HEADER_LEN]);
            let h = Header::decode(&hb);
            let end = HEADER_LEN + h.len as usize;
            if self.input.len() < end {
                return;
            }
            let body: Vec<u8> = self.input[HEADER_LEN..end].to_vec();
            self.input.drain(..end);
            let Some(ty) = MsgType::from_u32(h.ty) else {
                self.reply(MsgType::Error as u32, h.req_id, h.tx_id, b"EINVAL\0");
                continue;
            };
            self.log.push(Logged {
                ty,
                tx: h.tx_id,
                args: split_strings(&body),
            });
            match self.handle(ty, h.tx_id, &body) {
                Ok(out) => self.reply(h.ty, h.req_id, h.tx_id, &out),
                Err(e) => {
                    let mut b = e.as_bytes().to_vec();
                    b.push(0);
                    self.reply(MsgType::Error as u32, h.req_id, h.tx_id, &b);
                }
            }
        }
    }
}

impl Write for FakeXenstored {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        s.input.extend_from_slice(buf);
        s.pump();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for FakeXenstored {
    /// Replies and events queued so far; with none, `WouldBlock` (a real socket would block
    /// forever: a test waiting for an event nobody sends must fail, not hang).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        if s.output.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "fake xenstored: nothing queued",
            ));
        }
        let n = buf.len().min(s.output.len());
        for (slot, b) in buf.iter_mut().zip(s.output.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}
