"""Provider drivers: the protocol, the typed errors, the registry and the simulator."""
