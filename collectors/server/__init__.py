"""Servers: the monitoring host itself (`kind: host`, psutil), and the `vigil_server_*` catalogue.

config: the host's model; metrics: the families every server kind emits (kind: ssh too) and the
host's selection; collector: the contract. README.md is the kind page.
"""
