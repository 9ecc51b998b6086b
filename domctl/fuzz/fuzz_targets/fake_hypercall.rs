//! The fake hypervisor decodes whatever bytes a (possibly buggy) builder hands it; it must answer with
//! an errno, never panic. Input: 1 byte selector, then the argument bytes.
#![no_main]
use domctl::fake::FakeXen;
use domctl::{HypercallBuffer, Hypercalls, InterfaceVersion, XenArch, abi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let arch = if sel & 1 == 0 {
        XenArch::X86_64
    } else {
        XenArch::Arm64
    };
    let version = InterfaceVersion::ALL[usize::from(sel >> 1) % 4];
    let mut fake = FakeXen::new(arch, version);
    let Ok(mut buf) = fake.alloc_buffer(rest.len()) else {
        return;
    };
    if buf.write_at(0, rest).is_err() {
        return;
    }
    let (op, sub) = match (sel >> 3) % 4 {
        0 => (abi::hypercall::DOMCTL, buf.address()),
        1 => (
            abi::hypercall::MEMORY_OP,
            [6, 7, 13, 99][usize::from(sel >> 5) % 4],
        ),
        2 => (abi::hypercall::HVM_OP, u64::from(sel >> 5) & 1),
        _ => (
            abi::hypercall::EVENT_CHANNEL_OP,
            abi::EVTCHNOP_ALLOC_UNBOUND,
        ),
    };
    let _ = fake.hypercall(op, [sub, buf.address(), 0, 0, 0]);
    // A second domctl with the same bytes exercises state left by the first (created domains, …).
    let _ = fake.hypercall(abi::hypercall::DOMCTL, [buf.address(), 0, 0, 0, 0]);
});
