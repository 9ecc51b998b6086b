//! Structured boot-blob fuzzing: build a valid `BootConfig` from the input, encode it, check the
//! untouched blob round-trips, then corrupt it (bit flips, byte stores, truncation, insertion,
//! appended bytes) and optionally repair the length field and/or CRC so that corrupted payloads get
//! past the frame checks into postcard and the semantic checks.
//!
//! Also drives `encode_into` with buffers of every size up to the blob's, which must either fit or
//! report `BufferTooSmall`.
#![no_main]

use firmware_config::blob::{
    self, BlobError, BootBuilder, BootConfig, BootConsole, BootDomain, BootIomem, BootKind,
    BootOnCrash, HEADER_LEN,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../common/frame.rs"]
mod frame;

fn text<const N: usize>(u: &mut Unstructured<'_>, min: usize) -> Result<heapless::String<N>> {
    let len = u.int_in_range(min..=N.min(min + 40))?;
    let mut s = heapless::String::new();
    for _ in 0..len {
        let c = char::from(u.int_in_range(b'a'..=b'z')?);
        let _ = s.push(c);
    }
    Ok(s)
}

fn domain(u: &mut Unstructured<'_>, index: usize) -> Result<BootDomain> {
    let mut name: heapless::String<{ blob::MAX_NAME }> = text(u, 1)?;
    // Names must be distinct: suffix the index (fits: at most 41 + 2 characters).
    let _ = name.push_str(&format!("{index}"));
    let mut depends_on = heapless::Vec::new();
    if index > 0 {
        for _ in 0..u.int_in_range(0..=blob::MAX_DEPS.min(index))? {
            let _ = depends_on.push(u.int_in_range(0..=(index - 1) as u8)?);
        }
    }
    let mut iomem = heapless::Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let _ = iomem.push(BootIomem {
            first_mfn: u.int_in_range(0..=0xf_ffff_ffff)?,
            nr_pages: u.int_in_range(1..=0x1000)?,
            gfn: u.int_in_range(0..=0xf_ffff_ffff)?,
        });
    }
    let mut irqs = heapless::Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let _ = irqs.push(u.int_in_range(32..=1019)?);
    }
    let mut dt_devices = heapless::Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let mut p: heapless::String<{ blob::MAX_PATH }> = heapless::String::new();
        let _ = p.push('/');
        let _ = p.push_str(&text::<64>(u, 1)?);
        let _ = dt_devices.push(p);
    }
    Ok(BootDomain {
        name,
        kind: if u.arbitrary()? {
            BootKind::Arm64
        } else {
            BootKind::Pvh
        },
        builder: if u.arbitrary()? {
            BootBuilder::Xen
        } else {
            BootBuilder::Init
        },
        vcpus: u.int_in_range(1..=blob::MAX_VCPUS as u32)?,
        memory_kib: 4 * u.int_in_range(1..=(1u64 << 40))?,
        kernel: text(u, 1)?,
        ramdisk: if u.arbitrary()? {
            Some(text(u, 1)?)
        } else {
            None
        },
        cmdline: text(u, 0)?,
        console: *u.choose(&[BootConsole::Vpl011, BootConsole::Hvc, BootConsole::None])?,
        on_crash: *u.choose(&[
            BootOnCrash::Destroy,
            BootOnCrash::Restart,
            BootOnCrash::RebootPlatform,
        ])?,
        depends_on,
        iomem,
        irqs,
        dt_devices,
        p2m_pool_kib: u.arbitrary()?,
        passthrough_dtb: None,
        pv_disks: Default::default(),
        pv_nics: Default::default(),
    })
}

fn config(u: &mut Unstructured<'_>) -> Result<BootConfig> {
    let mut domains = Vec::new();
    for i in 0..u.int_in_range(0..=5)? {
        domains.push(domain(u, i)?);
    }
    Ok(BootConfig {
        system: text(u, 1)?,
        xen_major: 4,
        xen_minor: u.int_in_range(17..=22)?,
        domctl_interface: u.arbitrary()?,
        arm_gic: None,
        domains,
        xenstore: false,
    })
}

fn corrupt(u: &mut Unstructured<'_>, blob_bytes: &mut Vec<u8>) -> Result<bool> {
    let mut changed = false;
    for _ in 0..u.int_in_range(0..=8)? {
        if blob_bytes.is_empty() {
            break;
        }
        let at = u.choose_index(blob_bytes.len())?;
        // Aim most edits at the payload, where postcard and the checks live.
        let at = if at < HEADER_LEN && u.ratio(3, 4)? && blob_bytes.len() > HEADER_LEN {
            HEADER_LEN + at % (blob_bytes.len() - HEADER_LEN)
        } else {
            at
        };
        match u.int_in_range(0..=4)? {
            0 => blob_bytes[at] ^= 1 << u.int_in_range(0..=7)?,
            1 => blob_bytes[at] = u.arbitrary()?,
            2 => blob_bytes.truncate(at),
            3 => blob_bytes.insert(at, u.arbitrary()?),
            _ => blob_bytes.push(u.arbitrary()?),
        }
        changed = true;
    }
    Ok(changed)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let original = config(u)?;
    assert_eq!(
        original.check(),
        Ok(()),
        "the generator builds valid configs"
    );
    let good = blob::encode(&original).expect("a bounded config encodes");
    assert_eq!(blob::decode(&good).as_ref(), Ok(&original));

    let size = u.int_in_range(0..=good.len())?;
    let mut small = vec![0u8; size];
    match blob::encode_into(&original, &mut small) {
        Ok(n) => assert_eq!(&small[..n], &good[..]),
        Err(e) => {
            assert!(
                size < good.len(),
                "{size} bytes are enough for {}",
                good.len()
            );
            assert!(matches!(e, BlobError::BufferTooSmall { .. }), "{e:?}");
        }
    }

    let mut bad = good.clone();
    let changed = corrupt(u, &mut bad)?;
    match u.int_in_range(0..=2)? {
        0 => {}
        1 => frame::repair(&mut bad, false),
        _ => frame::repair(&mut bad, true),
    }
    match blob::decode(&bad) {
        Ok(decoded) => {
            assert_eq!(decoded.check(), Ok(()));
            let again = blob::encode(&decoded).expect("a decoded config re-encodes");
            assert_eq!(blob::decode(&again).as_ref(), Ok(&decoded));
            if bad == good {
                assert_eq!(decoded, original);
            }
        }
        Err(e) => {
            assert!(
                changed && bad != good,
                "the untouched blob was refused: {e}"
            );
            let _ = e.to_string();
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
