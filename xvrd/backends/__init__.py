"""Backends: the only modules that talk to a hypervisor (libvirt) or the simulated host."""
