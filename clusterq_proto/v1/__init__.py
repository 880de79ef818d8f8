"""clusterq wire protocol v1: the modules next to this file are generated from proto/ (`make proto`);
this file is written by hand and holds what the .proto files document but cannot declare."""

LEADER_TRAILER = "clusterq-leader"
"""Trailing-metadata key of a follower's FAILED_PRECONDITION answer: the leader's address to follow."""
