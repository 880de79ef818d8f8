"""clusterq stasis app: the per-node process beside each Asterisk that runs the queue's calls."""
