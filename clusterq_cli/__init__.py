"""`clusterq`: the operator's command line for the coordinator (like Asterisk's `queue show`)."""
