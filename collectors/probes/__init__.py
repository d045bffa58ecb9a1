"""Service probes (`kind: http`, `tcp`, `dns`, `icmp`, `postgres`, `mysql`): is the service there, as expected?

config: each kind's model; metrics: the catalogue they share and each kind's part of it, and
the rules; collector: one Probe per kind on a shared base (collector.Probe), each driving its
protocol module (http, tcp, dns, icmp, postgres, mysql) and tls for every TLS handshake.
README.md is the kind page.
"""
