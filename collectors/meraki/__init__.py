"""Cisco Meraki organizations (`kind: meraki`) through the Dashboard API v1, inside the rate limit at any size.

config: the target's model; metrics: the `vigil_meraki_*` catalogue and its rules; collector: the
contract, each organization's endpoint groups as signals; api: the paged client and the answers' shapes.
README.md is the kind page.
"""
