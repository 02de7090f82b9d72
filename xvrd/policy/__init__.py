"""Policies decide; they never touch the host. See `xvrd.policy.base`."""
