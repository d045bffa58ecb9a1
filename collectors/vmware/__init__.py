"""VMware vCenter and ESXi (`kind: vmware`, pyvmomi), read in a few round trips whatever the inventory's size.

config: the target's model; metrics: the `vigil_vmware_*` catalogue and its rules; collector: the
contract; session: the kept login; inventory and fastread: the paged PropertyCollector read; perf:
QueryPerf; events: QueryEvents. README.md is the kind page.
"""
