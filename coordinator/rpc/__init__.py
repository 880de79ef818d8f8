"""gRPC edge of the coordinator: servicers, conversion, server assembly."""
