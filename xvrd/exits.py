"""Exit codes shared by the commands (sysexits.h where one fits)."""

EX_CONFIG = 78  # bad configuration, scenario or state file; nothing on the host was touched
EX_UNAVAILABLE = 69  # the host (libvirtd) cannot be reached at start, or a daemon already runs
