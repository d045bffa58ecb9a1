# vigil's slow poll of a Linux server (every 6h by default): pending updates, OS, kernel, hardware.
# Updates are counted from the package lists the server already has: never `apt update`,
# never a lock, never root (apt list reads the cache; dnf/yum -C read theirs only). `apt list`
# costs a quarter of the CPU of `apt-get -s upgrade`, which runs the resolver.
export LC_ALL=C
section() { printf '@@vigil %s\n' "$1"; }
section os_release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
section kernel; uname -sr
section dmi
for field in sys_vendor product_name product_serial; do
    printf '%s=%s\n' "$field" "$(cat /sys/class/dmi/id/$field 2>/dev/null)"
done
if command -v apt-get >/dev/null; then
    section apt; apt list --upgradable 2>/dev/null
elif command -v dnf >/dev/null || command -v yum >/dev/null; then
    tool=$(command -v dnf || command -v yum)
    section rpm_updates; "$tool" -q -C check-update 2>/dev/null; echo "exit=$?"
    section rpm_security; "$tool" -q -C updateinfo list --security 2>/dev/null; echo "exit=$?"
fi
section end
