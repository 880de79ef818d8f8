"""Benchmark of clusterq against Asterisk's own app_queue on ONE real Asterisk node.

`python -m clusterq_testing.bench_asterisk` starts etcd, one coordinator, one Asterisk 22 node (with
app_queue loaded beside clusterq) and the node's stasis app, all on 127.0.0.1 and stopped by PID, then
measures for both queue implementations with the same callers, agents and music:

* CPU and RSS per waiting caller with music (Asterisk, plus clusterq's stasis app for clusterq);
* agent-free-to-bridged latency with announcements off and on, and caller order inversions.

Every call figure comes from the bench's own ARI observer (`clusterq_testing.observer`), i.e. from
what Asterisk reports, never from clusterq. Results: docs/benchmarks-asterisk.md.
"""
