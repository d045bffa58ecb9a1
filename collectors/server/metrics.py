"""The `vigil_server_*` families, shared by every way of polling a server; the host kind's selection.

The local host collector and the SSH collector both emit these, so alert rules and
dashboards treat the monitoring host and remote servers alike.
"""

from agent.model import Condition, MetricSpec

CPU_SECONDS = MetricSpec("vigil_server_cpu_seconds_total", "counter",
                         "CPU time spent in each mode, summed over all CPUs.", ("mode",), "seconds")
CPUS = MetricSpec("vigil_server_cpus", "gauge", "Number of logical CPUs.")
LOAD1 = MetricSpec("vigil_server_load1", "gauge", "Load average over 1 minute.")
LOAD5 = MetricSpec("vigil_server_load5", "gauge", "Load average over 5 minutes.")
LOAD15 = MetricSpec("vigil_server_load15", "gauge", "Load average over 15 minutes.")
MEMORY_TOTAL = MetricSpec("vigil_server_memory_total_bytes", "gauge",
                          "Physical memory.", unit="bytes")
MEMORY_AVAILABLE = MetricSpec("vigil_server_memory_available_bytes", "gauge",
                              "Memory available to new processes without swapping.", unit="bytes")
SWAP_TOTAL = MetricSpec("vigil_server_swap_total_bytes", "gauge", "Swap space.", unit="bytes")
SWAP_FREE = MetricSpec("vigil_server_swap_free_bytes", "gauge", "Unused swap space.", unit="bytes")
FILESYSTEM_LABELS = ("mountpoint", "fstype")
FILESYSTEM_SIZE = MetricSpec("vigil_server_filesystem_size_bytes", "gauge",
                             "Filesystem size.", FILESYSTEM_LABELS, "bytes")
FILESYSTEM_FREE = MetricSpec("vigil_server_filesystem_free_bytes", "gauge",
                             "Free filesystem space, including space reserved for root.",
                             FILESYSTEM_LABELS, "bytes")
FILESYSTEM_AVAIL = MetricSpec("vigil_server_filesystem_avail_bytes", "gauge",
                              "Filesystem space available to unprivileged users.",
                              FILESYSTEM_LABELS, "bytes")
DISK_READ = MetricSpec("vigil_server_disk_read_bytes_total", "counter",
                       "Bytes read from a block device.", ("device",), "bytes")
DISK_WRITTEN = MetricSpec("vigil_server_disk_written_bytes_total", "counter",
                          "Bytes written to a block device.", ("device",), "bytes")
DISK_IO_TIME = MetricSpec("vigil_server_disk_io_time_seconds_total", "counter",
                          "Time a block device spent doing I/O.", ("device",), "seconds")
NET_RECEIVE = MetricSpec("vigil_server_network_receive_bytes_total", "counter",
                         "Bytes received on a network interface.", ("device",), "bytes")
NET_TRANSMIT = MetricSpec("vigil_server_network_transmit_bytes_total", "counter",
                          "Bytes sent on a network interface.", ("device",), "bytes")
NET_RECEIVE_ERRORS = MetricSpec("vigil_server_network_receive_errors_total", "counter",
                                "Receive errors on a network interface.", ("device",))
NET_TRANSMIT_ERRORS = MetricSpec("vigil_server_network_transmit_errors_total", "counter",
                                 "Transmit errors on a network interface.", ("device",))
BOOT_TIME = MetricSpec("vigil_server_boot_time_timestamp_seconds", "gauge",
                       "When the server booted.", unit="seconds")
SYSTEMD_FAILED_UNITS = MetricSpec("vigil_server_systemd_failed_units", "gauge",
                                  "systemd units in the failed state (systemd hosts only).")
REBOOT_REQUIRED = MetricSpec("vigil_server_reboot_required", "gauge",
                             "1 when the OS asks for a reboot (Debian/Ubuntu reboot-required, Windows "
                             "pending reboot).")
INFO = MetricSpec("vigil_server_info", "gauge", "Operating system and hardware, value 1.",
                  ("os", "version", "vendor", "model", "serial"))

# Families the SSH collector reads (and the host collector may add): the same names and
# specs for every way of polling a server.
FILESYSTEM_FILES = MetricSpec("vigil_server_filesystem_files", "gauge",
                              "Inodes of a filesystem (0 where it has no fixed number).", FILESYSTEM_LABELS)
FILESYSTEM_FILES_FREE = MetricSpec("vigil_server_filesystem_files_free", "gauge",
                                   "Free inodes of a filesystem.", FILESYSTEM_LABELS)
FILESYSTEM_READONLY = MetricSpec("vigil_server_filesystem_readonly", "gauge",
                                 "1 when a filesystem is mounted read-only (often after I/O errors).",
                                 FILESYSTEM_LABELS)
TIME_SYNCHRONIZED = MetricSpec("vigil_server_time_synchronized", "gauge",
                               "1 when the clock is synchronised by NTP (timedatectl or chrony), 0 when not.")
SYSTEMD_FAILED_UNIT = MetricSpec("vigil_server_systemd_failed_unit_info", "gauge",
                                 "A failed systemd unit, value 1 (at most the first 10 by name).", ("unit",))
UPDATES_PENDING = MetricSpec("vigil_server_updates_pending", "gauge",
                             "Package updates the server's package lists offer (type all, or security), "
                             "refreshed every 6h by default.", ("type",))
KERNEL_INFO = MetricSpec("vigil_server_kernel_info", "gauge", "The running kernel, value 1.", ("release",))
WINDOWS_STOPPED_AUTO_SERVICES = MetricSpec("vigil_server_windows_stopped_auto_services", "gauge",
                                           "Windows services set to start automatically that are not running.")
WINDOWS_STOPPED_AUTO_SERVICE = MetricSpec("vigil_server_windows_stopped_auto_service_info", "gauge",
                                          "A stopped automatic Windows service, value 1 (at most the first 10 "
                                          "by name).", ("service",))
WINDOWS_LAST_HOTFIX = MetricSpec("vigil_server_windows_last_hotfix_timestamp_seconds", "gauge",
                                 "When the newest Windows update (hotfix) was installed.", unit="seconds")
WINDOWS_BACKUP_LAST_SUCCESS = MetricSpec("vigil_server_windows_backup_last_success_timestamp_seconds", "gauge",
                                         "When Windows Server Backup last completed a backup successfully.",
                                         unit="seconds")
WINDOWS_BACKUP_LAST_OK = MetricSpec("vigil_server_windows_backup_last_ok", "gauge",
                                    "1 when Windows Server Backup's last backup succeeded, 0 when it failed.")

# What kind: host emits (kind: ssh has its own selection, collectors.ssh.metrics)
METRICS = (
    CPU_SECONDS, CPUS, LOAD1, LOAD5, LOAD15,
    MEMORY_TOTAL, MEMORY_AVAILABLE, SWAP_TOTAL, SWAP_FREE,
    FILESYSTEM_SIZE, FILESYSTEM_FREE, FILESYSTEM_AVAIL,
    DISK_READ, DISK_WRITTEN, DISK_IO_TIME,
    NET_RECEIVE, NET_TRANSMIT, NET_RECEIVE_ERRORS, NET_TRANSMIT_ERRORS,
    BOOT_TIME, SYSTEMD_FAILED_UNITS, REBOOT_REQUIRED, INFO,
    FILESYSTEM_FILES, FILESYSTEM_FILES_FREE, FILESYSTEM_READONLY, TIME_SYNCHRONIZED,
)

# deploy/prometheus/rules/host.yml and servers.yml, for kind: host and kind: ssh alike (ServerDown is ssh's)
CONDITIONS = (
    Condition("HostDiskWillFillIn24Hours", "warning",
              "predict_linear(vigil_server_filesystem_avail_bytes[6h], 24 * 3600) < 0 and "
              "vigil_server_filesystem_avail_bytes / vigil_server_filesystem_size_bytes < 0.25",
              "{mountpoint} fills within 24 h", not_judged="a trend over the last 6 h of samples"),
    Condition("HostDiskAlmostFull", "critical",
              "vigil_server_filesystem_avail_bytes / vigil_server_filesystem_size_bytes < 0.05",
              "{value:percent} free on {mountpoint}"),
    Condition("HostMemoryLow", "warning",
              "vigil_server_memory_available_bytes / vigil_server_memory_total_bytes < 0.05",
              "{value:percent} of memory available"),
    Condition("HostSystemdUnitsFailed", "warning", "vigil_server_systemd_failed_units > 0",
              "{value:count failed unit}"),
    Condition("HostFilesystemReadOnly", "critical", "vigil_server_filesystem_readonly == 1", "{mountpoint} read-only"),
    Condition("HostInodesAlmostExhausted", "warning",
              "vigil_server_filesystem_files_free / vigil_server_filesystem_files < 0.05 "
              "and vigil_server_filesystem_files > 0", "{value:percent} of inodes free on {mountpoint}"),
    Condition("HostRebootRequired", "warning", "vigil_server_reboot_required == 1", "reboot required"),
    Condition("HostSecurityUpdatesPending", "warning", 'vigil_server_updates_pending{type="security"} > 0',
              "{value:count security update} pending"),
    Condition("HostClockNotSynchronised", "warning", "vigil_server_time_synchronized == 0", "clock not synchronised"),
    Condition("HostWindowsAutoServiceStopped", "warning", "vigil_server_windows_stopped_auto_service_info == 1",
              "service {service} stopped"),
    Condition("HostWindowsBackupFailed", "warning", "vigil_server_windows_backup_last_ok == 0",
              "last Windows Server Backup failed"),
    Condition("HostWindowsBackupStale", "warning",
              "time() - vigil_server_windows_backup_last_success_timestamp_seconds > 36 * 3600",
              "no Windows Server Backup for {value:duration}"),
)
