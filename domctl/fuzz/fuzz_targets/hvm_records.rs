//! HVM context blobs come from Xen (gethvmcontext) and from callers (sethvmcontext): walking them must
//! never panic, and whatever walks must rebuild to the same records.
#![no_main]
use domctl::abi::x86::{HVM_SAVE_CODE_END, HvmContextBuilder, hvm_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = hvm_records(data) else {
        return;
    };
    let mut b = HvmContextBuilder::new();
    for r in records.iter().filter(|r| r.typecode != HVM_SAVE_CODE_END) {
        b = b
            .record(r.typecode, r.instance, r.data)
            .expect("record fits");
    }
    let rebuilt = b.finish();
    let again = hvm_records(&rebuilt).expect("rebuilt blob walks");
    assert_eq!(again.len(), records.len());
    for (a, b) in again.iter().zip(&records) {
        assert_eq!((a.typecode, a.data), (b.typecode, b.data));
    }
});
