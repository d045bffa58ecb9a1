# vigil's poll of a Linux server: sent on stdin to `/bin/sh -s`, one exec per poll.
# It reads what an unprivileged user may read and prints sections headed `@@vigil NAME`;
# vigil parses them locally. Nothing is installed or written on the server.
export LC_ALL=C
section() { printf '@@vigil %s\n' "$1"; }
section clk_tck; getconf CLK_TCK 2>/dev/null
# One awk for the /proc files (each a section named after it: stat, loadavg, meminfo, diskstats,
# netdev), and shell globs rather than ls: a poll forks as few processes as it can.
awk 'FNR == 1 { name = FILENAME; sub(".*/proc/", "", name); gsub("/", "", name); print "@@vigil " name } 1' \
    /proc/stat /proc/loadavg /proc/meminfo /proc/diskstats /proc/net/dev 2>/dev/null
section blockdevices; for device in /sys/block/*; do [ -e "$device" ] && printf '%s\n' "${device##*/}"; done
# Real filesystems only (not the kernel's nodev ones), so stat never touches /proc or a FUSE mount.
mounts=$(awk 'NR == FNR { if ($1 == "nodev") nodev[$2] = 1; next } !($3 in nodev) || $3 == "zfs"' \
    /proc/filesystems /proc/self/mounts)
section mounts; printf '%s\n' "$mounts"
section statfs
printf '%s\n' "$mounts" | {
    while read -r device mountpoint rest; do
        [ -n "$mountpoint" ] && set -- "$@" "$(printf '%b' "$mountpoint")"
    done
    [ $# -gt 0 ] && timeout 10 stat -f -c '%b %f %a %S %c %d %n' -- "$@" 2>/dev/null
}
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    section failed_units; systemctl list-units --state=failed --no-legend --plain --no-pager 2>/dev/null
fi
if [ -f /etc/debian_version ]; then
    section reboot_required; [ -f /run/reboot-required ] && echo yes || echo no
fi
if command -v timedatectl >/dev/null && [ -d /run/systemd/system ]; then
    section time_synchronized; timedatectl show -p NTPSynchronized --value 2>/dev/null
elif command -v chronyc >/dev/null; then
    section chrony_tracking; chronyc -n tracking 2>/dev/null
fi
section end
