"""Microsoft 365 and hybrid Active Directory through Microsoft Graph (`kind: m365`).

config: the target's model; auth: the msal token; graph: Graph pages, errors and report
downloads on agent.net.http; readers: one function per signal; collector: the contract.
The permission each signal needs is in PERMISSIONS (readers) and docs/m365.md. README.md is the kind
page.
"""
