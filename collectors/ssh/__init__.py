"""Servers over SSH (`kind: ssh`, paramiko), Linux or Windows, with nothing installed on them.

config: the target's model; metrics: the `vigil_server_*` families it emits (shared with kind: host);
collector: the contract, one exec per poll on a kept connection; linux and windows: the poll scripts'
commands and how their replies map onto the families; output: the reply's sections. README.md is the
kind page.
"""
