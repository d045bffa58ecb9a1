"""UPSes over SNMP (`kind: ups`, pysnmp): RFC 1628 UPS-MIB or APC PowerNet-MIB cards.

config: the target's model; metrics: the `vigil_ups_*` catalogue and the reading every UPS kind maps
onto it (kind: nut too); collector: the contract, detecting the MIB; snmp: the asyncio SNMP client;
mib, rfc1628, apc: one reader per MIB. README.md is the kind page.
"""
