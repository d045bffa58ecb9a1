# vigil's poll of a Windows server: one `powershell -NoProfile -NonInteractive -EncodedCommand`
# per poll, printing one JSON document; vigil maps it locally. Each section is caught on
# its own: a missing feature or a refused query leaves that section out and says why in
# `errors`, and the rest still arrives. $Inventory (set by vigil in front of this script)
# adds the slow sections. Times are Unix seconds, computed here, so no localized date
# string ever has to be parsed.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Closing the SSH channel does not end this process, so it ends itself: $Limit seconds in (set by
# vigil, just after it stopped waiting) whatever hangs, on an error no section caught, and once
# the reply is out (the watchdog's runspace would keep it alive otherwise).
trap { [Console]::Error.WriteLine($_); [Environment]::Exit(1) }
[void][PowerShell]::Create().AddScript("Start-Sleep -Seconds $Limit; [Environment]::Exit(124)").BeginInvoke()
$result = [ordered]@{ vigil = 1; errors = [ordered]@{} }
function Unix($when) { if ($when) { ([DateTimeOffset]$when).ToUnixTimeSeconds() } }
function Section($name, [scriptblock]$read) {
    try { $result[$name] = & $read } catch { $result.errors[$name] = $_.Exception.Message }
}
Section 'cpu' {
    $cores = @(Get-CimInstance Win32_PerfRawData_PerfOS_Processor | Where-Object Name -ne '_Total')
    [ordered]@{
        count = $cores.Count
        # 100 ns units; privileged time already includes interrupt and DPC time
        user = ($cores | Measure-Object PercentUserTime -Sum).Sum
        system = ($cores | Measure-Object PercentPrivilegedTime -Sum).Sum
        idle = ($cores | Measure-Object PercentIdleTime -Sum).Sum
    }
}
Section 'memory' {
    $os = Get-CimInstance Win32_OperatingSystem
    $perf = Get-CimInstance Win32_PerfRawData_PerfOS_Memory
    $pages = @(Get-CimInstance Win32_PageFileUsage)
    [ordered]@{
        total_bytes = [uint64]$os.TotalVisibleMemorySize * 1024
        available_bytes = [uint64]$perf.AvailableBytes
        swap_total_bytes = [uint64](($pages | Measure-Object AllocatedBaseSize -Sum).Sum) * 1MB
        swap_used_bytes = [uint64](($pages | Measure-Object CurrentUsage -Sum).Sum) * 1MB
        boot_time = Unix $os.LastBootUpTime
    }
}
Section 'volumes' {
    @(Get-CimInstance Win32_Volume -Filter 'DriveType = 3' | Where-Object { $_.Name -and $_.Capacity } |
        ForEach-Object { [ordered]@{ name = $_.Name; fstype = $_.FileSystem; size_bytes = $_.Capacity;
                                     free_bytes = $_.FreeSpace } })
}
Section 'services' {
    @(Get-CimInstance Win32_Service -Filter "StartMode = 'Auto' AND State <> 'Running'" |
        ForEach-Object { $_.Name })
}
Section 'reboot' {
    $keys = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending',
            'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
    [bool]($keys | Where-Object { Test-Path $_ })
}
if (Get-Command Get-WBSummary -ErrorAction SilentlyContinue) {
    Section 'backup' {
        $summary = Get-WBSummary
        [ordered]@{ last_success = Unix $summary.LastSuccessfulBackupTime; last_result = $summary.LastBackupResultHR }
    }
}
if ($Inventory) {
    Section 'os' {
        $os = Get-CimInstance Win32_OperatingSystem
        $system = Get-CimInstance Win32_ComputerSystem
        [ordered]@{ caption = $os.Caption; version = $os.Version; vendor = $system.Manufacturer;
                    model = $system.Model; serial = (Get-CimInstance Win32_BIOS).SerialNumber }
    }
    Section 'hotfix' {
        Unix (@(Get-HotFix | Where-Object InstalledOn | Sort-Object InstalledOn)[-1].InstalledOn)
    }
}
$result | ConvertTo-Json -Depth 4 -Compress
[Console]::Out.Flush()
[Environment]::Exit(0)
