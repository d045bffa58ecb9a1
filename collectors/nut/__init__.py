"""UPSes behind Network UPS Tools' upsd (`kind: nut`), over its line protocol.

config: the target's model; metrics: the `vigil_ups_*` families it emits (shared with kind: ups);
collector: the contract, one LIST VAR per poll; session: the kept upsd connection, STARTTLS and login;
variables: the reply's lines and NUT's variables read into a Reading. README.md is the kind page.
"""
