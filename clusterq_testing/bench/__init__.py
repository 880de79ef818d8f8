"""`make bench`: the coordinator's throughput, decision latency, memory and failover time.

Real parts: one etcd member and coordinator replica subprocesses on loopback; the Asterisk nodes
are simulated (`simnode.SimNode` drives the stasis app's own CoordinatorClient). Entry point:
`python -m clusterq_testing.bench`; results and method are in docs/benchmarks.md.
"""
