"""A simulated Xen host: credit scheduler, split network driver, TCP, workloads."""
