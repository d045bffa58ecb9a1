"""Counting (`kind: counting`): counts its runs, from no device at all.

config: the target's model; metrics: its catalogue and rules; collector: the contract.
README.md is the kind page.
"""
