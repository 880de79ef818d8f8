"""The tests' and benchmarks' name for the operator client (it ships in clusterq_cli)."""

from clusterq_cli.leader_client import AdminClient

__all__ = ["AdminClient"]
