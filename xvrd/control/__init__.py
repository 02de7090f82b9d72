"""The control plane: the daemon's Unix socket, its protocol, and the CLI client."""
