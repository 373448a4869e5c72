# shellcheck shell=bash
# tests/vm/lib/host.sh — host side of the real-kernel lane, sourced by tests/vm/run and
# tests/vm/bench: host packages, the Debian kernel (downloaded and unpacked, never installed),
# the workspace binaries, the initramfs and the QEMU boot.
#
# Rule: everything lands under $VM_DIR (default target/vm); nothing is installed into the host
# except Debian packages through apt-get, and nothing leaves the guest over a network (the guest
# has no network card: `-nic none`).

vm_log() { echo "vm: $*" >&2; }
vm_die() { echo "vm: error: $*" >&2; exit 2; }

# Runs a command as root (apt-get needs it); sudo only when we are not root already.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else vm_die "need root (or sudo) to run: $*"
  fi
}

# Host tools: qemu (the VM), busybox-static (guest userland), ipvsadm + iproute2 + strace (copied
# into the guest with their libraries), kmod (depmod), xz-utils (vmlinux extraction).
HOST_PACKAGES="qemu-system-x86 busybox-static ipvsadm iproute2 kmod xz-utils gzip strace"
APT_UPDATED=0
apt_update_once() {
  [ "$APT_UPDATED" = 1 ] && return 0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  APT_UPDATED=1
}

ensure_host_packages() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
  command -v ipvsadm >/dev/null || missing+=(ipvsadm)
  [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || [ -x /bin/ip ] || missing+=(iproute2)
  command -v depmod >/dev/null || missing+=(kmod)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v strace >/dev/null || missing+=(strace)
  command -v apt-cache >/dev/null || vm_die "not a Debian/Ubuntu host: install $HOST_PACKAGES by hand"
  if [ ${#missing[@]} -gt 0 ]; then
    vm_log "installing host packages: ${missing[*]}"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# The kernel package linux-image-amd64 points to today; security updates rename it, so it is
# resolved every time. Without package lists (fresh container) apt-get update runs first.
resolve_kernel_package() {
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$pkg" ]; then
    apt_update_once >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
          | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  echo "$pkg"
}

# Sets KDIR (unpacked package root) and KVER. Reuses $VM_DIR/kernel-$KVER when complete.
ensure_kernel() {
  local pkg deb off
  pkg=${KPKG:-$(resolve_kernel_package)}
  if [ -z "$pkg" ]; then
    # Offline: keep the newest kernel we already unpacked rather than fail.
    KDIR=$(ls -d "$VM_DIR"/kernel-*/ 2>/dev/null | sort -V | tail -1)
    [ -n "$KDIR" ] || vm_die "cannot resolve the kernel package (apt-cache depends linux-image-amd64)"
    KDIR=${KDIR%/}; KVER=${KDIR##*/kernel-}
    vm_log "kernel package not resolvable; using cached $KVER"
    return 0
  fi
  KVER=${pkg#linux-image-}
  KDIR=$VM_DIR/kernel-$KVER
  if [ -f "$KDIR/.complete" ]; then return 0; fi
  mkdir -p "$VM_DIR/dl"
  if ! ls "$VM_DIR/dl/${pkg}"_*.deb >/dev/null 2>&1; then
    vm_log "downloading $pkg"
    # apt-get download as root warns that _apt cannot write here; harmless.
    (cd "$VM_DIR/dl" && apt-get download "$pkg" 2>&1 | grep -v 'unsandboxed' >&2 || true)
  fi
  deb=$(ls -t "$VM_DIR/dl/${pkg}"_*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || vm_die "apt-get download $pkg failed"
  rm -rf "$KDIR"; mkdir -p "$KDIR"
  dpkg-deb -x "$deb" "$KDIR"
  # The .deb has no modules.dep (made at install time).
  depmod -b "$KDIR" "$KVER"
  # Uncompressed ELF vmlinux for QEMU's PVH boot: skips the in-guest decompression (~5 s TCG).
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KDIR/boot/vmlinuz-$KVER" | head -1 | cut -d: -f1 || true)
  if [ -n "$off" ]; then
    tail -c +$((off+1)) "$KDIR/boot/vmlinuz-$KVER" | xz -dc --single-stream > "$KDIR/vmlinux" 2>/dev/null || true
  fi
  if [ "$(head -c4 "$KDIR/vmlinux" 2>/dev/null | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
    rm -f "$KDIR/vmlinux"
  fi
  touch "$KDIR/.complete"
  vm_log "kernel $KVER unpacked in $KDIR"
}

# The workspace's test build, once: `cargo test --workspace --no-run`, the very build the Rust
# tests made, so after them the lane compiles nothing. (A plain `cargo build` resolves features
# without the dev-dependencies, so it rebuilt 31 crates for 50 s and a second set of them on
# disk.) Its artifact messages are kept in TEST_BUILD for the executables' paths.
TEST_BUILD=""
test_build() {
  [ -n "$TEST_BUILD" ] && return 0
  vm_log "cargo test --workspace --no-run"
  TEST_BUILD=$(cd "$REPO" && cargo test --workspace --locked --no-run \
      --message-format=json-render-diagnostics) || vm_die "cargo test --workspace --no-run failed"
}

# The path of the executable whose file name matches the extended regex $1 in the test build.
test_build_executable() {
  printf '%s\n' "$TEST_BUILD" | grep -oE "\"executable\":\"[^\"]*/$1\"" | tail -1 | cut -d'"' -f4
}

# Sets BALANCED_BIN, unless given: the test build's `balanced`, or with BALANCED_VM_RELEASE=1
# (benchmarks) a release build.
ensure_balanced_bin() {
  if [ -n "${BALANCED_BIN:-}" ]; then
    [ -x "$BALANCED_BIN" ] || vm_die "BALANCED_BIN=$BALANCED_BIN is not an executable"
    return 0
  fi
  if [ "${BALANCED_VM_RELEASE:-0}" = 1 ]; then
    vm_log "cargo build --workspace --release"
    (cd "$REPO" && cargo build --workspace --bins --release --locked >&2) || vm_die "cargo build failed"
    local tdir=${CARGO_TARGET_DIR:-$REPO/target}
    case $tdir in /*) ;; *) tdir=$REPO/$tdir;; esac
    BALANCED_BIN=$tdir/release/balanced
  else
    test_build
    BALANCED_BIN=$(test_build_executable balanced)
  fi
  [ -n "$BALANCED_BIN" ] && [ -x "$BALANCED_BIN" ] || vm_die "no balanced executable after the build"
}

# Sets DIFF_BIN, unless given: the dataplane differential test (tests/vm/differential.rs) as
# an executable for the guest, from the test build.
ensure_differential_bin() {
  if [ -n "${DIFF_BIN:-}" ]; then return 0; fi
  test_build
  DIFF_BIN=$(test_build_executable 'vm_differential-[0-9a-f]+')
  [ -n "$DIFF_BIN" ] && [ -x "$DIFF_BIN" ] || vm_die "no vm_differential test executable in the test build"
}

# Every IPVS scheduler plus what the topology and the tunnels need; dependencies come from
# modules.dep. crc32c_generic first: libcrc32c only has a soft dependency on it.
# (Debian's kernel is built without ip_vs_twos: CONFIG_IP_VS_TWOS is not set.)
GUEST_MODULES="crc32c_generic ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr
  ip_vs_dh ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh ip_vs_pe_sip
  ipip sit ip_gre fou ip6_tunnel ip6_gre fou6 dummy veth bridge tcp_diag"

# build_initramfs OUT ROOTFS_EXTRA_DIR [SRC:DEST ...]
# A gzip'd newc archive: busybox, ipvsadm, ip, strace (with their libraries), the kernel modules
# in load order, tests/vm/guest as /vm, and the given files.
build_initramfs() {
  local out=$1 extra_dir=$2; shift 2
  local moddir=$KDIR/lib/modules/$KVER root
  root=$(mktemp -d "$VM_DIR/initramfs.XXXXXX")
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,lib/modules,root,var}
  ln -s /run "$root/var/run"
  cp /bin/busybox "$root/bin/busybox"
  local a
  for a in $(/bin/busybox --list); do
    case $a in busybox|ip|ipvsadm|strace) continue;; esac
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  echo "root:x:0:" > "$root/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
  copy_elf "$root" "$(command -v ipvsadm)" /usr/sbin/ipvsadm
  copy_elf "$root" "$(PATH=/usr/sbin:/sbin:/bin:$PATH command -v ip)" /usr/sbin/ip
  copy_elf "$root" "$(command -v strace)" /usr/bin/strace
  # ss (iproute2): socket details such as the MSS a connection took (scenario p)
  command -v ss >/dev/null && copy_elf "$root" "$(command -v ss)" /usr/bin/ss
  local spec src dest
  for spec in "$@"; do
    src=${spec%%:*}; dest=${spec#*:}
    copy_elf "$root" "$src" "$dest"
  done
  # kernel modules in dependency order
  declare -A pathof=() done_=()
  local n p order=()
  while read -r n p; do pathof[$n]=$p; done < <(
    awk -F: '{n=$1; sub(/.*\//,"",n); sub(/\.ko.*/,"",n); gsub(/-/,"_",n); print n, $1}' "$moddir/modules.dep")
  resolve_mod() {
    local m=${1//-/_} deps d i dn
    [ -n "${done_[$m]:-}" ] && return 0
    done_[$m]=1
    [ -n "${pathof[$m]:-}" ] || { vm_log "module $m not in modules.dep (built in?)"; return 0; }
    deps=$(grep -E "^${pathof[$m]}:" "$moddir/modules.dep" | cut -d: -f2)
    read -r -a d <<< "$deps"
    for ((i=${#d[@]}-1; i>=0; i--)); do dn=${d[i]##*/}; resolve_mod "${dn%%.ko*}"; done
    order+=("$m")
  }
  for n in $GUEST_MODULES; do resolve_mod "$n"; done
  : > "$root/lib/modules/load-order"
  for n in "${order[@]}"; do
    p=$moddir/${pathof[$n]}
    case $p in
      *.ko.xz)  xz -dc "$p" > "$root/lib/modules/$n.ko";;
      *.ko.zst) zstd -dcq "$p" > "$root/lib/modules/$n.ko";;
      *.ko.gz)  gzip -dc "$p" > "$root/lib/modules/$n.ko";;
      *)        cp "$p" "$root/lib/modules/$n.ko";;
    esac
    echo "$n" >> "$root/lib/modules/load-order"
  done
  cp -r "$HERE/guest" "$root/vm"
  cp "$HERE/guest/init" "$root/init"
  chmod 755 "$root/init"
  [ -n "$extra_dir" ] && cp -r "$extra_dir"/. "$root/"
  (cd "$root" && find . | sed 's|^\./||' | grep -v '^\.$' \
     | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 > "$out"
  rm -rf "$root"
}

# copy_elf ROOT SRC DEST: the file, and for a dynamic ELF its libraries and loader (ldd).
copy_elf() {
  local root=$1 src=$2 dest=$3 lib
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
  for lib in $(ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' || true); do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}

kvm_usable() {
  [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  # A /dev/kvm without kvm_intel/kvm_amd (e.g. a PVM hypervisor) cannot run a stock kernel.
  [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ] || return 1
  echo quit | timeout 20 qemu-system-x86_64 -accel kvm -machine none -display none \
    -nodefaults -monitor stdio >/dev/null 2>&1
}

# boot_guest INITRD CONSOLE_LOG OUT_FILE: boots, console on stdout (tee'd into CONSOLE_LOG),
# the guest's second serial port (/dev/ttyS1) into OUT_FILE. Returns qemu's status
# (124: timeout).
boot_guest() {
  local initrd=$1 log=$2 out=$3 accel=${ACCEL:-auto} acc kernel
  if [ "$accel" = auto ]; then if kvm_usable; then accel=kvm; else accel=tcg; fi; fi
  case $accel in
    kvm) acc=(-enable-kvm -cpu host);;
    tcg) acc=(-accel tcg -cpu max);;
    *) vm_die "ACCEL must be auto, kvm or tcg";;
  esac
  kernel=$KDIR/boot/vmlinuz-$KVER
  [ -f "$KDIR/vmlinux" ] && kernel=$KDIR/vmlinux
  vm_log "booting $KVER (accel=$accel, timeout ${VM_TIMEOUT}s)"
  : > "$out"
  # sed -u: the console reaches the terminal and the log line by line, not in 4 KB blocks
  set +e
  timeout "$VM_TIMEOUT" qemu-system-x86_64 "${acc[@]}" -m "${VM_MEM:-1024}" -smp 1 \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 mitigations=off nokaslr i8042.noaux i8042.nokbd i8042.nopnp ${KERNEL_APPEND:-}" \
    -display none -monitor none -serial stdio -serial "file:$out" \
    -nic none -no-reboot </dev/null 2>&1 | sed -u 's/\r//g' | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

# split_out OUT_FILE DIR: the guest sends files over ttyS1 framed as
#   @@FILE name\n...lines...\n@@END\n
split_out() {
  local out=$1 dir=$2
  mkdir -p "$dir"
  tr -d '\r' < "$out" | awk -v dir="$dir" '
    /^@@FILE / { f = dir "/" $2; printf "" > f; next }
    /^@@END$/  { if (f != "") close(f); f = ""; next }
    f != ""    { print >> f }'
}
