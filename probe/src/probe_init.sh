#!/bin/busybox sh
# domforge probe guest /init (run by a static busybox). Reports what this guest sees as
# lines "DOMFORGE-PROBE <name> <key>=<value>" on its console; the format is documented in
# images/src/probe.rs and parsed by images::probe::parse_report_line.
# Nothing here may hang: every access to a device runs under `timeout`, and the script
# never exits (an exiting init panics the kernel), it sleeps after the report.

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Only alerts and worse on the console while reporting, so kernel messages do not split
# report lines.
echo 1 > /proc/sys/kernel/printk 2>/dev/null

# t SECONDS CMD...: run with a time limit when busybox has `timeout`.
if command -v timeout >/dev/null 2>&1; then
    t() { timeout "$@"; }
else
    t() { shift; "$@"; }
fi

CMDLINE=$(cat /proc/cmdline 2>/dev/null)
NAME=unnamed
EXPECT=
DENY=
PV_DISKS=
DENY_PV_DISKS=0
PV_NICS=
# Seconds to wait for a PV device to appear: a dom0less guest's xenstore comes up only when dom0's
# domforge-init introduces it, well after the guest has booted.
PV_WAIT=20
CRASH=0
for word in $CMDLINE; do
    case "$word" in
        domforge.name=*) NAME=${word#domforge.name=} ;;
        domforge.expect_devices=*) EXPECT=${word#domforge.expect_devices=} ;;
        domforge.deny_devices=*) DENY=${word#domforge.deny_devices=} ;;
        domforge.pv_disks=*) PV_DISKS=${word#domforge.pv_disks=} ;;
        domforge.deny_pv_disks=1) DENY_PV_DISKS=1 ;;
        domforge.pv_nics=*) PV_NICS=${word#domforge.pv_nics=} ;;
        domforge.pv_wait=*) PV_WAIT=${word#domforge.pv_wait=} ;;
        domforge.crash=1) CRASH=1 ;;
    esac
done
# Names are restricted to [A-Za-z0-9_.-], at most 64 characters.
NAME=$(printf '%s' "$NAME" | tr -cd 'A-Za-z0-9_.-' | head -c 64)
PV_WAIT=$(printf '%s' "$PV_WAIT" | tr -cd '0-9' | head -c 4)
[ -n "$PV_WAIT" ] || PV_WAIT=20
[ -n "$NAME" ] || NAME=unnamed

COUNT=0
# emit KEY VALUE: one report line; the value is reduced to printable ASCII, 256 chars.
emit() {
    COUNT=$((COUNT + 1))
    printf 'DOMFORGE-PROBE %s %s=%s\n' "$NAME" "$1" \
        "$(printf '%s' "$2" | tr -c ' -~' ' ' | head -c 256 | sed 's/ *$//')"
}

emit begin 1
emit arch "$(uname -m)"
emit kernel "$(uname -r)"

# --- CPUs --------------------------------------------------------------------------------
# count_cpulist "0-1,4": number of CPUs in a kernel cpulist (Documentation/admin-guide/cputopology.rst)
count_cpulist() {
    n=0
    for part in $(echo "$1" | tr ',' ' '); do
        case "$part" in
            *-*) a=${part%-*}; b=${part#*-}; n=$((n + b - a + 1)) ;;
            '') ;;
            *) n=$((n + 1)) ;;
        esac
    done
    echo "$n"
}
emit cpus.online "$(count_cpulist "$(cat /sys/devices/system/cpu/online 2>/dev/null)")"
emit cpus.cpuinfo "$(grep -c '^processor' /proc/cpuinfo 2>/dev/null)"

# --- Memory ------------------------------------------------------------------------------
emit mem.total_kb "$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)"
grep -E '^[0-9a-f]+-[0-9a-f]+ : System RAM$' /proc/iomem 2>/dev/null > /tmp/ram
i=0
while read -r range rest; do
    emit "mem.ram.$i" "$range"
    i=$((i + 1))
done < /tmp/ram
emit mem.ram.count "$i"

# --- Hypervisor --------------------------------------------------------------------------
HV=none
if [ -r /proc/device-tree/hypervisor/compatible ]; then
    COMPAT=$(tr '\0' ' ' < /proc/device-tree/hypervisor/compatible)
    emit hypervisor.compatible "$COMPAT"
    case "$COMPAT" in xen,*) HV=xen ;; *) HV=other ;; esac
fi
if [ -r /sys/hypervisor/type ]; then
    HV=$(cat /sys/hypervisor/type)
    if [ -r /sys/hypervisor/version/major ]; then
        emit hypervisor.version "$(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)"
    fi
fi
DETECTED=$(dmesg 2>/dev/null | sed -n 's/.*Hypervisor detected: //p' | head -n 1)
[ -n "$DETECTED" ] && emit hypervisor.detected "$DETECTED"
if [ "$HV" = none ] && grep -qw hypervisor /proc/cpuinfo 2>/dev/null; then HV=unknown; fi
emit hypervisor "$HV"

# --- Passthrough node and kernel modules -------------------------------------------------
if [ -d /proc/device-tree/passthrough ]; then
    i=0
    for node in /proc/device-tree/passthrough/*; do
        [ -d "$node" ] || continue
        emit "passthrough.$i" "${node##*/}"
        i=$((i + 1))
    done
    emit passthrough.count "$i"
fi
if [ -r /etc/domforge/modules ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        m=${ko##*/}; m=${m%.ko}
        if t 10 insmod "$ko" 2>/dev/null; then emit "module.$m" ok; else emit "module.$m" fail; fi
    done < /etc/domforge/modules
fi

# --- Devices -----------------------------------------------------------------------------
# A device is named <kind>@<hex guest-physical address>, e.g. pl031@9010000.
# platform_dev ADDR: the device directory Linux made for a DT node at ADDR, named
# "<unit-address>.<node-name>" (drivers/of/platform.c: of_device_make_bus_id()); ARM
# PrimeCells (PL011, PL031, PL061) sit on the amba bus, everything else on platform.
platform_dev() {
    for d in /sys/bus/platform/devices/"$1".* /sys/bus/amba/devices/"$1".*; do
        [ -e "$d" ] && { echo "$d"; return 0; }
    done
    return 1
}
# dt_node ADDR: a device-tree node with unit address ADDR, at most 3 levels deep (the
# trailing "/" follows the /proc/device-tree symlink).
dt_node() {
    find /proc/device-tree/ -maxdepth 3 -name "*@$1" 2>/dev/null | head -n 1
}

# functional_check KIND ADDR PLATFORM_DIR: sets CHECK (ok|fail|skip) and VALUE.
functional_check() {
    CHECK=skip
    VALUE=
    case "$1" in
        pl031|rtc)
            CHECK=fail
            for rtc in /sys/class/rtc/rtc*; do
                [ -e "$rtc" ] || continue
                case "$(readlink -f "$rtc/device")" in
                    */"$2".*)
                        VALUE=$(t 5 cat "$rtc/since_epoch" 2>/dev/null)
                        [ -n "$VALUE" ] && [ "$VALUE" -gt 0 ] 2>/dev/null && CHECK=ok
                        ;;
                esac
            done
            ;;
        pl061|gpio)
            CHECK=fail
            for chip in "$3"/gpio/gpiochip* "$3"/gpiochip*; do
                [ -e "$chip" ] || continue
                c=${chip##*/}
                VALUE="$c ngpio=$(cat /sys/class/gpio/$c/ngpio 2>/dev/null)"
                CHECK=ok
                break
            done
            ;;
        virtio-blk)
            CHECK=fail
            for blk in "$3"/virtio*/block/*; do
                [ -e "$blk" ] || continue
                b=${blk##*/}
                if VALUE=$(t 10 head -c 512 "/dev/$b" 2>/dev/null | tr '\0' '\n' | head -n 1); then
                    [ -n "$VALUE" ] && CHECK=ok
                fi
                VALUE="$b $VALUE"
                break
            done
            ;;
    esac
}

# report_device ROLE SPEC
report_device() {
    role=$1
    spec=$2
    kind=${spec%@*}
    addr=${spec#*@}
    id="dev.$spec"
    emit "$id.role" "$role"
    # Drivers may bind asynchronously (modules just loaded): wait up to 5 s for an expected one.
    tries=0
    while [ "$role" = expect ] && [ $tries -lt 5 ]; do
        pd=$(platform_dev "$addr") && [ -e "$pd/driver" ] && break
        sleep 1
        tries=$((tries + 1))
    done
    node=$(dt_node "$addr")
    pd=$(platform_dev "$addr")
    if [ -n "$node" ] || [ -n "$pd" ]; then present=yes; else present=no; fi
    emit "$id.present" "$present"
    dtpath=
    [ -n "$node" ] && dtpath="/${node#/proc/device-tree/}"
    emit "$id.dt" "$dtpath"
    drv=none
    [ -n "$pd" ] && [ -e "$pd/driver" ] && drv=$(basename "$(readlink "$pd/driver")")
    emit "$id.driver" "$drv"
    if [ "$present" = yes ]; then
        functional_check "$kind" "$addr" "$pd"
        emit "$id.check" "$CHECK"
        [ -n "$VALUE" ] && emit "$id.value" "$VALUE"
    fi
    if [ "$role" = deny ]; then
        if [ "$present" = yes ]; then
            emit "$id.devmem" skip-present
        else
            # Touch the physical address from a separate process: a fault kills only that
            # process (SIGBUS 7 / SIGSEGV 11 -> status 128+n). Announce first, in case the
            # hypervisor kills the whole guest instead.
            emit "$id.devmem" trying
            out=$(t 5 devmem "0x$addr" 32 2>&1)
            rc=$?
            case $rc in
                0) emit "$id.devmem" "value:$out" ;;
                135|138|139) emit "$id.devmem" "fault" ;;
                124|143) emit "$id.devmem" "timeout" ;;
                *) emit "$id.devmem" "error:$rc $out" ;;
            esac
        fi
    fi
    if [ "$role" = expect ]; then
        if [ "$present" = yes ] && [ "$CHECK" != fail ]; then v=ok; else v=fail; fi
    else
        if [ "$present" = no ]; then v=ok; else v=fail; fi
    fi
    emit "$id.verdict" "$v"
}

for spec in $(echo "$EXPECT" | tr ',' ' '); do report_device expect "$spec"; done
for spec in $(echo "$DENY" | tr ',' ' '); do report_device deny "$spec"; done

# --- PV disks and networks (xenbus frontends) ----------------------------------------------
# wait_for PATH SECONDS: the frontend connects asynchronously after xenbus probes it.
wait_for() {
    n=0
    while [ ! -e "$1" ] && [ $n -lt "$2" ]; do sleep 1; n=$((n + 1)); done
    [ -e "$1" ]
}

# report_pv_disk VDEV MARKER: the disk exists, its size and read-only flag, and its first line.
report_pv_disk() {
    id="pvdisk.$1"
    if wait_for "/sys/block/$1" "$PV_WAIT"; then present=yes; else present=no; fi
    emit "$id.present" "$present"
    v=fail
    if [ "$present" = yes ]; then
        emit "$id.size" "$(cat "/sys/block/$1/size" 2>/dev/null)"
        emit "$id.ro" "$(cat "/sys/block/$1/ro" 2>/dev/null)"
        got=$(t 10 head -c 512 "/dev/$1" 2>/dev/null | tr '\0' '\n' | head -n 1)
        emit "$id.marker" "$got"
        # The marker is one word (it comes from the command line); the line may go on.
        case "$got" in "$2"|"$2 "*) [ -n "$2" ] && v=ok ;; esac
    fi
    emit "$id.verdict" "$v"
}

# report_pv_nic IF=ADDR/PREFIX@PEER: the interface exists, its MAC, its link, and a ping.
report_pv_nic() {
    ifname=${1%%=*}
    rest=${1#*=}
    addr=${rest%@*}
    peer=${rest#*@}
    id="pvnic.$ifname"
    if wait_for "/sys/class/net/$ifname" "$PV_WAIT"; then present=yes; else present=no; fi
    emit "$id.present" "$present"
    v=fail
    if [ "$present" = yes ]; then
        emit "$id.mac" "$(cat "/sys/class/net/$ifname/address" 2>/dev/null)"
        ip link set lo up 2>/dev/null
        ip addr add "$addr" dev "$ifname" 2>/dev/null
        ip link set "$ifname" up 2>/dev/null
        n=0
        while [ "$(cat "/sys/class/net/$ifname/carrier" 2>/dev/null)" != 1 ] && [ $n -lt 20 ]; do
            sleep 1; n=$((n + 1))
        done
        emit "$id.carrier" "$(cat "/sys/class/net/$ifname/carrier" 2>/dev/null)"
        # The peer configures its address at about the same time: keep trying for 60 s.
        ping=fail
        n=0
        while [ $n -lt 30 ]; do
            if t 5 ping -c 1 -W 2 "$peer" >/dev/null 2>&1; then ping=ok; break; fi
            sleep 1; n=$((n + 1))
        done
        emit "$id.ping" "$ping"
        [ "$ping" = ok ] && v=ok
    fi
    emit "$id.verdict" "$v"
}

for spec in $(echo "$PV_DISKS" | tr ',' ' '); do report_pv_disk "${spec%%:*}" "${spec#*:}"; done
if [ "$DENY_PV_DISKS" = 1 ]; then
    # Give a (wrongly) configured frontend time to appear before concluding there is none.
    sleep 3
    found=$(ls /sys/block 2>/dev/null | grep '^xvd' | tr '\n' ' ' | sed 's/ *$//')
    if [ -z "$found" ]; then emit pvdisk.none ok; else emit pvdisk.none "fail:$found"; fi
fi
for spec in $(echo "$PV_NICS" | tr ',' ' '); do report_pv_nic "$spec"; done

if [ "$CRASH" = 1 ]; then
    emit crash requested
    emit end "$COUNT"
    # Documentation/admin-guide/sysrq.rst: 'c' crashes the kernel via a NULL dereference.
    echo c > /proc/sysrq-trigger
else
    emit end "$COUNT"
fi

# Keep the guest (and its console) alive.
trap '' INT TERM HUP
while :; do sleep 3600; done
