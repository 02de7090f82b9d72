"""A client process running as another user (`nobody`), for permission tests.

A fork rather than a new interpreter: the interpreter may live where nobody cannot read it
(a pyenv under /root). The child touches only its socket and the files opened for it.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from xvrd.cli import build_parser, main

NOBODY = 65534
NOGROUP = 65534


def require_root() -> None:
    """Switching uid needs root: skipped for a developer without it, a failure in CI."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("tests that switch to another uid must run as root in CI")
        pytest.skip("switching to another uid needs root")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def as_nobody(work: Callable[[], int], tmp_path: Path) -> Outcome:
    """Run ``work`` in a forked child that has become nobody:nogroup; its exit code and output."""
    build_parser()  # import every command module now: nobody may not read the stdlib's files
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports only through its exit code
            code = 99
            try:
                os.setgroups([])
                os.setgid(NOGROUP)
                os.setuid(NOBODY)
                sys.stdout, sys.stderr = out, err
                try:
                    code = work()
                except SystemExit as exit_:
                    code = int(exit_.code or 0)
            except BaseException:
                traceback.print_exc(file=err)
            finally:
                out.flush()
                err.flush()
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    return Outcome(os.waitstatus_to_exitcode(status), out_path.read_text(), err_path.read_text())


def cli(*argv: str) -> Callable[[], int]:
    return lambda: main(list(argv))
