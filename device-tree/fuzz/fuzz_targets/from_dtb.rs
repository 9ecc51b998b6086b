//! Arbitrary bytes into the DT reader, and everything downstream that a hostile board DTB reaches:
//! the inventory, DTS printing, rewriting, and a passthrough fragment for the first few nodes.
#![no_main]

use device_tree::DeviceTree;
use device_tree::passthrough::{FragmentOptions, PassthroughRequest, fragment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = DeviceTree::from_dtb(data) else {
        return;
    };
    let _ = device_tree::inventory::read_inventory(&tree);
    let _ = tree.to_dts();
    let again = DeviceTree::from_dtb(&tree.to_dtb()).expect("our own blob must parse");
    assert_eq!(again, tree);
    let paths: Vec<String> = tree.walk().into_iter().skip(1).take(4).map(|(p, _)| p).collect();
    for p in paths {
        let mut req = PassthroughRequest::new(p);
        req.force_without_iommu = true;
        let opts = FragmentOptions { drop_dependencies: true, ..Default::default() };
        let _ = fragment(&tree, &[req], &opts);
    }
});
