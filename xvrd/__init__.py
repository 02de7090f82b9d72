"""xvrd: a self-configuring Xen credit-scheduler daemon."""

__version__ = "0.1.0"
