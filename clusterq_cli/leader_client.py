"""The leader-following admin client, kept importable here for the CLI and its users; it lives in
clusterq_common.leader_client since the stasis app uses it too (dialplan agent login/pause)."""

from clusterq_common.leader_client import AdminClient

__all__ = ["AdminClient"]
