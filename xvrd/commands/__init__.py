"""Sub-commands of `xvrd`: each module exposes ``register(subparsers)``."""
