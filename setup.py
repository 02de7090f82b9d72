"""Build hook: compile the simulator's event-loop modules with mypyc when possible.

The simulated host is pure Python and runs as such; compiled with mypyc (which ships with
mypy) the same code runs about four times faster, which is what lets batch experiments and
the test suite simulate minutes of a busy host in seconds. Set XVRD_PURE_PYTHON=1 to skip
compilation (for example to debug the model with pdb).
"""

import os

from setuptools import setup

COMPILED = [
    "simulator/engine.py",
    "simulator/credit.py",
    "simulator/tcp.py",
    "simulator/network.py",
    "simulator/netback.py",
    "simulator/workloads.py",
]


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("XVRD_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    # An empty config: the project's mypy settings (plugins, package list) are for checking
    # the whole tree, not for compiling these modules.
    return mypycify(["--config-file=", *COMPILED], opt_level="3")


setup(ext_modules=ext_modules())
