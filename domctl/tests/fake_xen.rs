//! The typed API against the fake hypervisor: version probe, errno translation, the fake's Xen-like
//! validation, failure injection, and the bytes that go on the wire (checked against header offsets).

use domctl::abi::{self, arm, x86};
use domctl::fake::{Call, FakeXen};
use domctl::{
    ArchConfig, CreateDomain, DomId, Errno, GuestMemoryWriter, HypercallBuffer, Hypercalls,
    InterfaceVersion, Op, TransportError, Xen, XenArch, XenError,
};
use zerocopy::{FromBytes, IntoBytes};

fn dom(id: u16) -> DomId {
    DomId::new(id).unwrap()
}

fn open(arch: XenArch, v: InterfaceVersion) -> (Xen<FakeXen>, FakeXen) {
    let fake = FakeXen::new(arch, v);
    let (xen, report) = Xen::open(fake.clone()).unwrap();
    assert_eq!(report.version, v);
    (xen, fake)
}

// ------------------------------------------------------------------------------------------------
// interface version probe
// ------------------------------------------------------------------------------------------------

#[test]
fn probe_finds_each_version_after_eacces_for_the_older_ones() {
    for (i, v) in InterfaceVersion::ALL.into_iter().enumerate() {
        let fake = FakeXen::new(XenArch::X86_64, v);
        let (xen, report) = Xen::open(fake.clone()).unwrap();
        assert_eq!(xen.version(), v);
        assert_eq!(report.attempts.len(), i + 1);
        for a in &report.attempts[..i] {
            assert_eq!(a.answer, Err(Errno::EACCES), "{a:?}");
        }
        assert_eq!(report.attempts[i].answer, Ok(()));
        // Probe goes to domain 0 with each candidate in turn.
        let sent: Vec<u32> = fake
            .calls()
            .iter()
            .filter_map(|c| match c.call {
                Call::DomctlVersionMismatch { cmd, sent } => {
                    assert_eq!(cmd, abi::cmd::GETDOMAININFO);
                    Some(sent)
                }
                Call::GetDomainInfo { domid } => {
                    assert_eq!(domid, 0);
                    Some(v.value())
                }
                _ => None,
            })
            .collect();
        let want: Vec<u32> = InterfaceVersion::ALL[..=i]
            .iter()
            .map(|v| v.value())
            .collect();
        assert_eq!(sent, want);
    }
}

#[test]
fn probe_report_names_the_release_family() {
    let (_, report) = Xen::open(FakeXen::new(XenArch::X86_64, InterfaceVersion::V15)).unwrap();
    assert_eq!(
        report.to_string(),
        "domctl interface version 0x15: Xen 4.17 (XENVER_version says Xen 4.17)"
    );
    let fake = FakeXen::new(XenArch::Arm64, InterfaceVersion::V17);
    fake.set_release(4, 21);
    let (_, report) = Xen::open(fake).unwrap();
    assert_eq!(
        report.to_string(),
        "domctl interface version 0x17: Xen 4.19-4.21 (XENVER_version says Xen 4.21)"
    );
}

#[test]
fn probe_of_an_unknown_xen_says_what_it_is() {
    let fake = FakeXen::new(XenArch::X86_64, InterfaceVersion::V18);
    fake.speak_raw_interface_version(0x19);
    fake.set_release(4, 23);
    let err = Xen::open(fake).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.starts_with("domctl interface version probe: Xen 4.23 accepted none of 0x15-0x18"),
        "{msg}"
    );
    assert!(msg.contains("0x18: EACCES"), "{msg}");
}

#[test]
fn probe_without_privilege_says_so() {
    let fake = FakeXen::new(XenArch::X86_64, InterfaceVersion::V15);
    fake.fail_nth(Op::GetDomainInfo, 1, Errno::EPERM);
    let err = Xen::open(fake).err().unwrap();
    assert!(matches!(
        err,
        XenError::ProbeRefused {
            errno: Errno::EPERM,
            ..
        }
    ));
    assert!(err.to_string().contains("not privileged"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// errno translation
// ------------------------------------------------------------------------------------------------

#[test]
fn eacces_on_a_domctl_is_reported_as_a_version_mismatch() {
    // Told 0x16, but the Xen is 4.17 (0x15): the EACCES triggers a probe that names the real version.
    let fake = FakeXen::new(XenArch::X86_64, InterfaceVersion::V15);
    let mut xen = Xen::with_version(fake, InterfaceVersion::V16);
    let err = xen.create_domain(&CreateDomain::pvh(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_createdomain: domctl interface version mismatch: this Xen speaks 0x15 (Xen 4.17), \
         we sent 0x16"
    );
    let err = xen.set_max_mem(dom(3), 1024).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_max_mem on domain 3: domctl interface version mismatch: this Xen speaks 0x15 \
         (Xen 4.17), we sent 0x16"
    );
}

#[test]
fn eacces_after_a_successful_probe_is_an_xsm_refusal() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V15);
    fake.fail_nth(Op::CreateDomain, 1, Errno::EACCES);
    let err = xen.create_domain(&CreateDomain::pvh(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_createdomain: refused by the XSM/FLASK policy (the interface version was accepted) \
         (EACCES: Permission denied)"
    );
}

#[test]
fn errnos_are_explained_per_operation() {
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V16);
    let err = xen
        .set_hvm_param(dom(42), abi::hvm_param::STORE_PFN, 1)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "HVMOP_set_param on domain 42: no such domain (ESRCH: No such process)"
    );
    let err = xen.max_vcpus(dom(0), 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_max_vcpus on domain 0: the vCPU count must equal createdomain's max_vcpus \
         (EINVAL: Invalid argument)"
    );
    assert_eq!(
        domctl::errno_meaning(Op::PopulatePhysmap, Errno::ENOMEM),
        "Xen is out of memory"
    );
    assert_eq!(
        domctl::errno_meaning(Op::GetDomainInfo, Errno::EPERM),
        "not permitted: this domain is not privileged for it (run from the control domain)"
    );
}

// ------------------------------------------------------------------------------------------------
// a PVH-style build on x86
// ------------------------------------------------------------------------------------------------

fn pvh_build(v: InterfaceVersion) {
    let (mut xen, fake) = open(XenArch::X86_64, v);
    fake.clear_calls();
    let d = xen.create_domain(&CreateDomain::pvh(2)).unwrap();
    assert_eq!(d.get(), 1);
    xen.max_vcpus(d, 2).unwrap();
    xen.set_max_mem(d, 16 * 1024).unwrap();
    xen.set_paging_mempool_size(d, 1 << 20).unwrap();
    let ram: Vec<u64> = (0..256).collect();
    xen.populate_physmap(d, &ram).unwrap();
    xen.populate_physmap(d, &[0xfeffc, 0xfeffd]).unwrap(); // store + console
    let map = [
        x86::E820Entry {
            addr: 0,
            size: 256 << 12,
            type_: x86::e820::RAM,
        },
        x86::E820Entry {
            addr: 0xfeffc000,
            size: 0x2000,
            type_: x86::e820::RESERVED,
        },
    ];
    xen.set_memory_map(d, &map).unwrap();
    let mut mem = xen.map_foreign(d, &ram).unwrap();
    mem.write(0x1ffe, b"crosses a page").unwrap();
    let store_port = xen.evtchn_alloc_unbound(d, DomId::DOM0).unwrap();
    let console_port = xen.evtchn_alloc_unbound(d, DomId::DOM0).unwrap();
    assert_eq!((store_port, console_port), (1, 2));
    xen.set_hvm_param(d, abi::hvm_param::STORE_PFN, 0xfeffc)
        .unwrap();
    xen.set_hvm_param(d, abi::hvm_param::STORE_EVTCHN, store_port.into())
        .unwrap();
    assert_eq!(
        xen.get_hvm_param(d, abi::hvm_param::STORE_PFN).unwrap(),
        0xfeffc
    );

    // Boot CPU, the libxenguest way: keep HEADER from the full context, add CPU, END.
    let full = xen.get_hvm_context(d).unwrap();
    let recs = x86::hvm_records(&full).unwrap();
    let header = recs
        .iter()
        .find(|r| r.typecode == x86::HVM_SAVE_CODE_HEADER)
        .unwrap();
    let mut cpu = <x86::HvmHwCpu as zerocopy::FromZeros>::new_zeroed();
    cpu.rip = 0x100_0850;
    cpu.rbx = 0x6000;
    cpu.cr0 = 0x11;
    let blob = x86::HvmContextBuilder::new()
        .record(x86::HVM_SAVE_CODE_HEADER, 0, header.data)
        .unwrap()
        .record(x86::HVM_SAVE_CODE_CPU, 0, cpu.as_bytes())
        .unwrap()
        .finish();
    xen.set_hvm_context(d, &blob).unwrap();
    xen.unpause(d).unwrap();

    let info = xen.getdomaininfo(d).unwrap();
    assert!(info.is_hvm() && !info.is_paused());
    assert_eq!(info.tot_pages, 258);
    assert_eq!(info.max_pages, 4096);
    assert_eq!(info.nr_online_vcpus, 2);

    let state = fake.domain(1).unwrap();
    assert_eq!(state.vcpus, Some(2));
    assert_eq!(state.paging_mempool_bytes, Some(1 << 20));
    assert_eq!(state.memory_map.as_deref(), Some(&map[..]));
    assert_eq!(state.hvm_params[&abi::hvm_param::STORE_EVTCHN], 1);
    assert_eq!(state.hvm_cpu[&0].rip, 0x100_0850);
    assert_eq!(state.hvm_cpu[&0].rbx, 0x6000);
    assert_eq!(
        fake.read_guest(1, 0x1ffe, 14).unwrap(),
        b"crosses a page".to_vec()
    );
    assert_eq!(
        fake.ops(),
        [
            Op::CreateDomain,
            Op::MaxVcpus,
            Op::MaxMem,
            Op::SetPagingMempoolSize,
            Op::PopulatePhysmap,
            Op::PopulatePhysmap,
            Op::SetMemoryMap,
            Op::MapForeign,
            Op::EvtchnAllocUnbound,
            Op::EvtchnAllocUnbound,
            Op::HvmSetParam,
            Op::HvmSetParam,
            Op::HvmGetParam,
            Op::GetHvmContext,
            Op::GetHvmContext,
            Op::SetHvmContext,
            Op::UnpauseDomain,
            Op::GetDomainInfo,
        ]
    );
    drop(mem);
    assert_eq!(
        fake.live_buffers(),
        0,
        "every hypercall buffer was released"
    );
}

#[test]
fn pvh_build_sequence_on_every_interface_version() {
    for v in InterfaceVersion::ALL {
        pvh_build(v);
    }
}

#[test]
fn auto_domid_is_zero_before_4_22_and_domid_any_from_4_22() {
    for (v, expect) in [
        (InterfaceVersion::V15, 0),
        (InterfaceVersion::V17, 0),
        (InterfaceVersion::V18, 0x7FF5),
    ] {
        let (mut xen, fake) = open(XenArch::X86_64, v);
        xen.create_domain(&CreateDomain::pvh(1)).unwrap();
        let requested = fake.calls().iter().find_map(|c| match c.call {
            Call::CreateDomain { requested, .. } => Some(requested),
            _ => None,
        });
        assert_eq!(requested, Some(expect), "{v}");
    }
}

#[test]
fn explicit_domids() {
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V15);
    let cfg = CreateDomain {
        domid: Some(dom(7)),
        ..CreateDomain::pvh(1)
    };
    assert_eq!(xen.create_domain(&cfg).unwrap(), dom(7));
    let err = xen.create_domain(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_createdomain on domain 7: that domain id is already in use (EEXIST: File exists)"
    );
    let zero = CreateDomain {
        domid: Some(DomId::DOM0),
        ..CreateDomain::pvh(1)
    };
    let err = xen.create_domain(&zero).unwrap_err();
    assert!(matches!(err, XenError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("0 means \"pick one\""), "{err}");
    // From 4.22 domain 0 is an exact request, and dom0 exists.
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V18);
    let err = xen.create_domain(&zero).unwrap_err();
    assert!(matches!(
        err,
        XenError::Hypervisor {
            errno: Errno::EEXIST,
            ..
        }
    ));
}

#[test]
fn getdomaininfo_is_exact_even_on_4_17() {
    // On 0x15 Xen answers for the next domain at or above the id; the API must not pass that off.
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V15);
    let cfg = CreateDomain {
        domid: Some(dom(5)),
        ..CreateDomain::pvh(1)
    };
    xen.create_domain(&cfg).unwrap();
    let err = xen.getdomaininfo(dom(3)).unwrap_err();
    assert!(matches!(
        err,
        XenError::Hypervisor {
            errno: Errno::ESRCH,
            ..
        }
    ));
    // The fake did answer (like 4.17) — for domain 5.
    let last = fake.calls().pop().unwrap();
    assert_eq!(last.call, Call::GetDomainInfo { domid: 3 });
    assert_eq!(last.result, Ok(0));
    assert_eq!(xen.getdomaininfo(dom(5)).unwrap().domid, dom(5));
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V16);
    assert!(xen.getdomaininfo(dom(3)).is_err());
    assert_eq!(fake.calls().pop().unwrap().result, Err(Errno::ESRCH));
}

#[test]
fn populating_a_frame_twice_or_past_max_mem_stops_with_the_frame() {
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V15);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    xen.set_max_mem(d, 40).unwrap(); // 10 pages
    xen.populate_physmap(d, &[1, 2, 3]).unwrap();
    let err = xen.populate_physmap(d, &[4, 2, 5]).unwrap_err();
    assert!(matches!(
        err,
        XenError::PartialPopulate {
            done: 1,
            requested: 3,
            stopped_at: 2,
            ..
        }
    ));
    assert!(
        err.to_string()
            .starts_with("XENMEM_populate_physmap on domain 1: only 1 of 3 extents were populated"),
        "{err}"
    );
    let err = xen
        .populate_physmap(d, &(10..20).collect::<Vec<_>>())
        .unwrap_err();
    assert!(
        matches!(
            err,
            XenError::PartialPopulate {
                done: 6,
                stopped_at: 16,
                ..
            }
        ),
        "{err}"
    );
    let err = xen.populate_physmap_order(d, 9, &[0x201]).unwrap_err();
    assert!(matches!(err, XenError::Invalid { .. }));
}

#[test]
fn destroyed_domains_answer_esrch_and_keep_their_last_state() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V17);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    xen.set_hvm_param(d, abi::hvm_param::CONSOLE_PFN, 9)
        .unwrap();
    xen.destroy(d).unwrap();
    let err = xen
        .set_hvm_param(d, abi::hvm_param::CONSOLE_PFN, 10)
        .unwrap_err();
    assert!(matches!(
        err,
        XenError::Hypervisor {
            op: Op::HvmSetParam,
            errno: Errno::ESRCH,
            ..
        }
    ));
    assert!(xen.unpause(d).is_err());
    assert!(fake.domain(1).is_none());
    assert_eq!(
        fake.destroyed_domain(1).unwrap().hvm_params[&abi::hvm_param::CONSOLE_PFN],
        9
    );
    assert!(xen.destroy(DomId::DOM0).is_err());
}

#[test]
fn injected_failure_hits_exactly_the_nth_call_without_side_effects() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V15);
    fake.fail_nth(Op::PopulatePhysmap, 2, Errno::ENOMEM);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    xen.populate_physmap(d, &[1]).unwrap();
    let err = xen.populate_physmap(d, &[2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "XENMEM_populate_physmap on domain 1: Xen is out of memory (ENOMEM: Out of memory)"
    );
    assert!(!fake.domain(1).unwrap().pages.contains_key(&2));
    xen.populate_physmap(d, &[2]).unwrap();
    assert_eq!(fake.domain(1).unwrap().pages.len(), 2);
}

#[test]
fn hvm_context_is_validated_like_hvm_load() {
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V15);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    xen.max_vcpus(d, 1).unwrap();
    let full = xen.get_hvm_context(d).unwrap();
    // A CPU record for a vCPU the domain does not have.
    let recs = x86::hvm_records(&full).unwrap();
    let cpu = <x86::HvmHwCpu as zerocopy::FromZeros>::new_zeroed();
    let blob = x86::HvmContextBuilder::new()
        .record(x86::HVM_SAVE_CODE_HEADER, 0, recs[0].data)
        .unwrap()
        .record(x86::HVM_SAVE_CODE_CPU, 1, cpu.as_bytes())
        .unwrap()
        .finish();
    assert!(xen.set_hvm_context(d, &blob).is_err());
    // Truncated blob.
    assert!(xen.set_hvm_context(d, &full[..full.len() - 3]).is_err());
    xen.set_hvm_context(d, &full).unwrap();
}

#[test]
fn x86_memory_mapping_follows_partial_progress() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V15);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    fake.clear_calls();
    xen.iomem_permission(d, 0xfe000, 100, true).unwrap();
    xen.memory_mapping(d, 0xe0000, 0xfe000, 100, true).unwrap();
    let maps: Vec<_> = fake
        .calls()
        .into_iter()
        .filter_map(|c| match c.call {
            Call::MemoryMapping {
                first_gfn, nr_mfns, ..
            } => Some((first_gfn, nr_mfns)),
            _ => None,
        })
        .collect();
    assert_eq!(maps, [(0xe0000, 64), (0xe0040, 36)]);
    assert!(xen.iomem_permission(d, u64::MAX, 2, true).is_err());
}

#[test]
fn guest_mapping_refuses_unmapped_frames_before_writing() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V15);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    xen.populate_physmap(d, &[0x10, 0x11, 0x20]).unwrap();
    let err = xen.map_foreign(d, &[0x10, 0x12]).err().unwrap();
    assert!(matches!(
        err,
        XenError::Transport {
            source: TransportError::MapFailed { pfn: 0x12, .. },
            ..
        }
    ));
    let mut m = xen.map_foreign(d, &[0x20, 0x10]).unwrap();
    // 0x10fff..0x11001 needs frame 0x11, which is not mapped: nothing may be written.
    let err = m.write(0x10ffe, &[1, 2, 3, 4]).unwrap_err();
    assert!(err.to_string().contains("0x11000"), "{err}");
    assert_eq!(fake.read_guest(1, 0x10ffe, 2).unwrap(), [0, 0]);
    m.write(0x20000, b"ok").unwrap();
    let mut back = [0u8; 2];
    m.read(0x20000, &mut back).unwrap();
    assert_eq!(&back, b"ok");
    assert!(m.write(u64::MAX, &[1, 2]).is_err());
}

// ------------------------------------------------------------------------------------------------
// ARM
// ------------------------------------------------------------------------------------------------

#[test]
fn arm_driver_domain_sequence() {
    let (mut xen, fake) = open(XenArch::Arm64, InterfaceVersion::V17);
    fake.add_host_dt_device("/soc/ethernet@ff0e0000");
    let mut cfg = CreateDomain::arm(2, arm::GIC_NATIVE, 64);
    cfg.flags |= abi::cdf::IOMMU;
    let (d, resolved) = xen.create_domain_resolved(&cfg).unwrap();
    // gic_version is IN/OUT: native became v3, in createdomain's answer...
    match resolved {
        ArchConfig::Arm(a) => assert_eq!((a.gic_version, a.nr_spis), (arm::GIC_V3, 64)),
        other => panic!("{other:?}"),
    }
    // ...and only there: ARM's getdomaininfo reports no arch config (arch_get_domain_info()).
    match xen.getdomaininfo(d).unwrap().arch {
        ArchConfig::Arm(a) => assert_eq!(a.gic_version, arm::GIC_NATIVE),
        other => panic!("{other:?}"),
    }
    xen.max_vcpus(d, 2).unwrap();
    let port = xen.vuart_init(d, 0x39000, DomId::DOM0).unwrap();
    assert_eq!(port, 1);
    xen.iomem_permission(d, 0xff0e0, 1, true).unwrap();
    xen.memory_mapping(d, 0xff0e0, 0xff0e0, 100, true).unwrap();
    // On ARM 4.19+ there is no XEN_DOMCTL_irq_permission (CONFIG_HAS_PIRQ is x86-only): the
    // fake refuses it as Xen does, and bind_pt_irq alone routes the SPI.
    assert!(xen.irq_permission(d, 95, true).is_err());
    xen.bind_pt_spi(d, 95).unwrap();
    xen.assign_dt_device(d, "/soc/ethernet@ff0e0000").unwrap();
    let ctx = arm::VcpuGuestContext::arm64_linux_boot(0x4008_0000, 0x4400_0000);
    xen.set_vcpu_context_arm64(d, 0, &ctx).unwrap();
    xen.unpause(d).unwrap();

    let st = fake.domain(d.get()).unwrap();
    assert_eq!(st.vuart, Some((0x39000, 0, 1)));
    assert_eq!(st.mmio, [(0xff0e0, 0xff0e0, 64), (0xff120, 0xff120, 36)]);
    assert!(st.spis.contains(&95));
    assert_eq!(st.dt_devices, ["/soc/ethernet@ff0e0000"]);
    assert_eq!(st.arm_vcpu[&0].user_regs.pc64, 0x4008_0000);
    assert_eq!(st.arm_vcpu[&0].user_regs.x[0], 0x4400_0000);
    assert!(!st.paused);

    // The second domain cannot have the same device or SPI.
    let d2 = xen.create_domain(&cfg).unwrap();
    let err = xen
        .assign_dt_device(d2, "/soc/ethernet@ff0e0000")
        .unwrap_err();
    assert!(err.to_string().contains("already assigned"), "{err}");
    let err = xen.bind_pt_spi(d2, 95).unwrap_err();
    assert!(matches!(
        err,
        XenError::Hypervisor {
            errno: Errno::EBUSY,
            ..
        }
    ));
    let err = xen.assign_dt_device(d2, "/soc/nothing").unwrap_err();
    assert!(err.to_string().contains("names no node"), "{err}");
    let err = xen.bind_pt_spi(d2, 20).unwrap_err();
    assert!(matches!(err, XenError::Invalid { .. }));
}

#[test]
fn arm_assign_needs_an_iommu_domain() {
    let (mut xen, fake) = open(XenArch::Arm64, InterfaceVersion::V15);
    fake.add_host_dt_device("/soc/uart@1000");
    let d = xen
        .create_domain(&CreateDomain::arm(1, arm::GIC_V2, 32))
        .unwrap();
    let err = xen.assign_dt_device(d, "/soc/uart@1000").unwrap_err();
    assert_eq!(
        err.to_string(),
        "XEN_DOMCTL_assign_device on domain 1: the domain was created without XEN_DOMCTL_CDF_iommu \
         (or Xen runs without an IOMMU) (EOPNOTSUPP: Operation not supported on transport endpoint)"
    );
}

#[test]
fn arm_arch_config_fields_are_refused_where_xen_would_ignore_them() {
    let mut cfg = CreateDomain::arm(1, arm::GIC_V3, 32);
    if let ArchConfig::Arm(a) = &mut cfg.arch {
        a.v8r_el1_msa = arm::V8R_EL1_MSA_VMSA;
    }
    let (mut xen, _) = open(XenArch::Arm64, InterfaceVersion::V17);
    assert!(matches!(
        xen.create_domain(&cfg).unwrap_err(),
        XenError::Invalid { .. }
    ));
    let (mut xen, _) = open(XenArch::Arm64, InterfaceVersion::V18);
    xen.create_domain(&cfg).unwrap();

    let mut sci = CreateDomain::arm(1, arm::GIC_V3, 32);
    if let ArchConfig::Arm(a) = &mut sci.arch {
        a.arm_sci_type = arm::SCI_SCMI_SMC;
    }
    let (mut xen, _) = open(XenArch::Arm64, InterfaceVersion::V17); // reports 4.19
    let err = xen.create_domain(&sci).unwrap_err();
    assert!(err.to_string().contains("4.21"), "{err}");
    let fake = FakeXen::new(XenArch::Arm64, InterfaceVersion::V17);
    fake.set_release(4, 21);
    let (mut xen, _) = Xen::open(fake).unwrap();
    xen.create_domain(&sci).unwrap();
}

#[test]
fn arch_specific_calls_are_refused_on_the_other_arch() {
    let (mut xen, _) = open(XenArch::Arm64, InterfaceVersion::V15);
    let err = xen.set_memory_map(dom(1), &[]).unwrap_err();
    assert!(err.to_string().contains("x86_64-only"), "{err}");
    assert!(xen.create_domain(&CreateDomain::pvh(1)).is_err());
    let (mut xen, _) = open(XenArch::X86_64, InterfaceVersion::V15);
    let err = xen.bind_pt_spi(dom(1), 40).unwrap_err();
    assert!(err.to_string().contains("arm64-only"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// the bytes on the wire
// ------------------------------------------------------------------------------------------------

/// A transport that only captures the domctl envelopes it is sent and answers success.
#[derive(Default)]
struct Capture {
    arch: Option<XenArch>,
    domctls: Vec<Vec<u8>>,
    buffers: Vec<(u64, std::rc::Rc<std::cell::RefCell<Vec<u8>>>)>,
}

struct CapBuf(u64, std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl HypercallBuffer for CapBuf {
    fn address(&self) -> u64 {
        self.0
    }
    fn len(&self) -> usize {
        self.1.borrow().len()
    }
    fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.1.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        out.copy_from_slice(&self.1.borrow()[offset..offset + out.len()]);
        Ok(())
    }
}

impl domctl::ForeignMapping for CapBuf {
    fn pages(&self) -> usize {
        0
    }
    fn write_page(&mut self, _: usize, _: usize, _: &[u8]) -> Result<(), TransportError> {
        Ok(())
    }
    fn read_page(&self, _: usize, _: usize, _: &mut [u8]) -> Result<(), TransportError> {
        Ok(())
    }
}

impl Hypercalls for Capture {
    type Buffer = CapBuf;
    type Mapping = CapBuf;
    fn arch(&self) -> XenArch {
        self.arch.unwrap_or(XenArch::X86_64)
    }
    fn alloc_buffer(&mut self, len: usize) -> Result<CapBuf, TransportError> {
        let addr = 0x1000_0000 * (self.buffers.len() as u64 + 1);
        let data = std::rc::Rc::new(std::cell::RefCell::new(vec![0; len]));
        self.buffers.push((addr, data.clone()));
        Ok(CapBuf(addr, data))
    }
    fn hypercall(&mut self, op: u64, args: [u64; 5]) -> Result<u64, TransportError> {
        if op == abi::hypercall::DOMCTL {
            let (_, data) = self.buffers.iter().find(|(a, _)| *a == args[0]).unwrap();
            let mut bytes = data.borrow().clone();
            self.domctls.push(bytes.clone());
            // Echo a valid domain id back for createdomain.
            bytes[8..10].copy_from_slice(&9u16.to_le_bytes());
            data.borrow_mut().copy_from_slice(&bytes);
        }
        Ok(0)
    }
    fn map_foreign(&mut self, _: u16, _: &[u64]) -> Result<CapBuf, TransportError> {
        Err(TransportError::Xen(Errno::ENOSYS))
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Offsets typed from the headers: `struct xen_domctl` (cmd @0, interface_version @4, domain @8, u @16)
/// and `struct xen_domctl_createdomain` (max_vcpus @28; vmtrace_size @48 in 4.17, @52 from 4.19;
/// x86 arch.emulation_flags @56 / @60).
#[test]
fn createdomain_bytes_follow_each_versions_layout() {
    for (v, vmtrace_off, arch_off, domid) in [
        (InterfaceVersion::V15, 48, 56, 0u16),
        (InterfaceVersion::V16, 48, 56, 0),
        (InterfaceVersion::V17, 52, 60, 0),
        (InterfaceVersion::V18, 52, 60, 0x7FF5),
    ] {
        let mut xen = Xen::with_version(Capture::default(), v);
        let cfg = CreateDomain {
            vmtrace_size: 0x1234,
            ..CreateDomain::pvh(3)
        };
        assert_eq!(xen.create_domain(&cfg).unwrap(), dom(9));
        let b = &xen.transport().domctls[0];
        assert_eq!(b.len(), 144);
        assert_eq!(le32(b, 0), 1, "XEN_DOMCTL_createdomain");
        assert_eq!(le32(b, 4), v.value());
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), domid);
        let u = &b[16..];
        assert_eq!(le32(u, 20), abi::cdf::HVM | abi::cdf::HAP, "flags @20");
        assert_eq!(le32(u, 28), 3, "max_vcpus @28");
        assert_eq!(le32(u, 36) as i32, -1, "max_grant_frames @36");
        assert_eq!(le32(u, 44), 1, "grant_opts @44");
        assert_eq!(le32(u, vmtrace_off), 0x1234, "vmtrace_size");
        assert_eq!(le32(u, arch_off), x86::emu::LAPIC, "emulation_flags");
    }
}

#[test]
fn arm_vcpu_context_and_bind_bytes() {
    let mut xen = Xen::with_version(
        Capture {
            arch: Some(XenArch::Arm64),
            ..Default::default()
        },
        InterfaceVersion::V15,
    );
    xen.bind_pt_spi(dom(1), 77).unwrap();
    let b = &xen.transport().domctls[0];
    assert_eq!(le32(b, 0), 38, "XEN_DOMCTL_bind_pt_irq");
    assert_eq!(le32(b, 16), 77, "machine_irq @0");
    assert_eq!(le32(b, 20), 4, "irq_type = PT_IRQ_TYPE_SPI @4");
    assert_eq!(u16::from_le_bytes([b[24], b[25]]), 77, "u.spi.spi @8");

    let ctx = arm::VcpuGuestContext::arm64_linux_boot(0x4008_0000, 0x4400_0000);
    xen.set_vcpu_context_arm64(dom(1), 1, &ctx).unwrap();
    let b = xen.transport().domctls[1].clone();
    assert_eq!(le32(&b, 0), 12, "XEN_DOMCTL_setvcpucontext");
    assert_eq!(le32(&b, 16), 1, "vcpu @0");
    let handle = u64::from_le_bytes(b[24..32].try_into().unwrap());
    let (_, data) = xen
        .transport()
        .buffers
        .iter()
        .find(|(a, _)| *a == handle)
        .unwrap();
    let data = data.borrow();
    assert_eq!(data.len(), 352);
    // flags @0, x0 @8, pc64 @8+248, cpsr @8+256, sctlr @320 (arch-arm.h).
    assert_eq!(le32(&data, 0), arm::VGCF_ONLINE);
    assert_eq!(u64::read_from_bytes(&data[8..16]).unwrap(), 0x4400_0000);
    assert_eq!(u64::read_from_bytes(&data[256..264]).unwrap(), 0x4008_0000);
    assert_eq!(u64::read_from_bytes(&data[264..272]).unwrap(), 0x1c5);
    assert_eq!(u64::read_from_bytes(&data[320..328]).unwrap(), 0x00c5_0078);
}

#[test]
fn a_guest_shutdown_is_reported_with_its_reason_until_destroyed() {
    let (mut xen, fake) = open(XenArch::X86_64, InterfaceVersion::V16);
    let d = xen.create_domain(&CreateDomain::pvh(1)).unwrap();
    let info = xen.getdomaininfo(d).unwrap();
    assert!(!info.is_shutdown());
    assert_eq!(info.shutdown_reason(), None);
    // SHUTDOWN_crash 3 (xen/include/public/sched.h).
    assert!(fake.shutdown_domain(d.get(), 3));
    let info = xen.getdomaininfo(d).unwrap();
    // XEN_DOMINF_shutdown (1<<2), code in bits 16-23 (domctl.h XEN_DOMINF_shutdownshift 16).
    assert_eq!(info.flags & (1 << 2), 1 << 2);
    assert_eq!((info.flags >> 16) & 0xff, 3);
    assert_eq!(info.shutdown_reason(), Some(3));
    xen.destroy(d).unwrap();
    assert!(
        !fake.shutdown_domain(d.get(), 3),
        "a destroyed domain cannot shut down"
    );
}
