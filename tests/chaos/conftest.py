"""Chaos tests reuse the end-to-end fixtures (real etcd, Asterisk, clusterq processes)."""

from tests.e2e.conftest import clusterq

__all__ = ["clusterq"]
