"""The tests' and benchmarks' name for the operator client (it lives in clusterq_common, shared by the
`clusterq` CLI and the stasis app's agent operations)."""

from clusterq_common.leader_client import AdminClient

__all__ = ["AdminClient"]
