"""CLI sub-commands, one module each, registered by `xvrd.cli`."""
