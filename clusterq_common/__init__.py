"""Code shared by the coordinator, the stasis app and the operator CLI (small, dependency-free apart from grpc)."""
