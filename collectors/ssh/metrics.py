"""What `kind: ssh` emits: the `vigil_server_*` families (collectors.server.metrics) a remote Linux or Windows
server shows, and the rules about them, ServerDown included."""

from agent.model import Condition
from collectors.server import metrics as m

METRICS = (
    m.CPU_SECONDS, m.CPUS, m.LOAD1, m.LOAD5, m.LOAD15,
    m.MEMORY_TOTAL, m.MEMORY_AVAILABLE, m.SWAP_TOTAL, m.SWAP_FREE,
    m.FILESYSTEM_SIZE, m.FILESYSTEM_FREE, m.FILESYSTEM_AVAIL,
    m.FILESYSTEM_FILES, m.FILESYSTEM_FILES_FREE, m.FILESYSTEM_READONLY,
    m.DISK_READ, m.DISK_WRITTEN, m.DISK_IO_TIME,
    m.NET_RECEIVE, m.NET_TRANSMIT, m.NET_RECEIVE_ERRORS, m.NET_TRANSMIT_ERRORS,
    m.BOOT_TIME, m.SYSTEMD_FAILED_UNITS, m.SYSTEMD_FAILED_UNIT, m.REBOOT_REQUIRED, m.TIME_SYNCHRONIZED,
    m.UPDATES_PENDING, m.INFO, m.KERNEL_INFO,
    m.WINDOWS_STOPPED_AUTO_SERVICES, m.WINDOWS_STOPPED_AUTO_SERVICE, m.WINDOWS_LAST_HOTFIX,
    m.WINDOWS_BACKUP_LAST_SUCCESS, m.WINDOWS_BACKUP_LAST_OK,
)
# deploy/prometheus/rules/host.yml and servers.yml
CONDITIONS = (*m.CONDITIONS, Condition("ServerDown", "critical", 'vigil_up{kind="ssh"} == 0', "cannot be reached"))
