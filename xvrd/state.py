"""Runtime state that must survive the daemon: originals, overrides, dom0 pinning, hold.

Kept in ``STATE_DIR/state.json``, rewritten atomically (temporary file, fsync, rename) after
every change, so a crash at any point leaves either the old or the new file. Originals are
the settings a domain had before xvrd first changed it, keyed by UUID (domain IDs change
when a domain reboots). A start after a crash finds the originals still there and restores
them on the next clean stop.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: 2: originals note the values xvrd set since (`Original.weights_set`, `pinnings_set`). A
#: version 1 file is still read, its originals marked `legacy`.
STATE_VERSION = 2
SUPPORTED_VERSIONS = (1, STATE_VERSION)


class StateDirBusy(Exception):
    """Another process holds the state directory."""


class StateError(Exception):
    """The state file exists but cannot be read or trusted."""


class _Model(BaseModel):
    # strict: a hand-edited true or "300" is refused, not taken as a weight of 1 or 300.
    model_config = ConfigDict(extra="forbid", strict=True)


#: Weights as any backend has them: Xen's 1..65535, QEMU's cpu_shares up to 262144.
AnyWeight = Annotated[int, Field(ge=1, le=262144)]
CpuId = Annotated[int, Field(ge=0)]


class Original(_Model):
    """A domain's settings before xvrd changed any of them, and the values xvrd set since.

    A setting goes back only while the host holds a value xvrd set: one changed by hand
    meanwhile (`xl sched-credit`, `xl vcpu-pin`) is the operator's and stays.
    """

    name: str
    weight: AnyWeight
    cap: int = Field(0, ge=0)
    pinning: list[list[CpuId]] = Field(default_factory=list)
    # The values xvrd set last and just before, oldest first (a change that failed, or a
    # crash cut short, may have left either); empty: xvrd has not changed that setting.
    weights_set: list[AnyWeight] = Field(default_factory=list)
    pinnings_set: list[list[list[CpuId]]] = Field(default_factory=list)
    # Recorded by a version 1 xvrd, which noted no values: whatever differs from the
    # original is taken as xvrd's, as that version took it.
    legacy: bool = False

    def owns_weight(self, weight: int) -> bool:
        """The host's ``weight`` is one xvrd set, not the operator's since."""
        return weight in self.weights_set or (self.legacy and weight != self.weight)

    def settled(self, weight: int, pinning: list[list[int]]) -> Original:
        """A legacy record as version 2 notes it, given what the domain has now: whatever
        differs from the original is xvrd's, as version 1 took it, and from here on only
        what xvrd sets is, so a change the operator makes later is the operator's."""
        return self.model_copy(
            update={
                "weights_set": [weight] if weight != self.weight else [],
                "pinnings_set": [pinning] if pinning != self.pinning else [],
                "legacy": False,
            }
        )

    def owns_vcpu(self, vcpu: int, cpus: list[int]) -> bool:
        """A vCPU's affinity (sorted CPUs) is one xvrd set, not the operator's since."""
        if any(vcpu < len(p) and p[vcpu] == cpus for p in self.pinnings_set):
            return True
        return self.legacy and (vcpu >= len(self.pinning) or self.pinning[vcpu] != cpus)


class Override(_Model):
    """A manual weight the policy never changes."""

    name: str
    weight: AnyWeight


class Hold(_Model):
    reason: str = ""
    since: str


class PersistedState(_Model):
    version: int = STATE_VERSION
    originals: dict[str, Original] = Field(default_factory=dict)
    overrides: dict[str, Override] = Field(default_factory=dict)
    dom0_pin: list[CpuId] | None = Field(None, min_length=1)
    hold: Hold | None = None
    boot_id: str | None = None  # the host's boot the originals were recorded in

    @model_validator(mode="after")
    def _upgrade(self) -> PersistedState:
        """A version 1 file's originals noted no values: marked legacy, written as version 2."""
        if self.version == 1:
            for uuid, original in self.originals.items():
                self.originals[uuid] = original.model_copy(update={"legacy": True})
            self.version = STATE_VERSION
        return self


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateStore:
    """Loads and saves `PersistedState` in a directory."""

    FILENAME = "state.json"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / self.FILENAME
        # A look that must change nothing (`xvrd run --once --mode advise`): saves are
        # skipped, and the file stays as the daemon it belongs to left it.
        self.read_only = False

    def load(self) -> PersistedState:
        """The saved state, or an empty one if there is none yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
            state = PersistedState.model_validate(json.loads(text))
        except FileNotFoundError:
            return PersistedState()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
            what = _first_error(exc) if isinstance(exc, ValidationError) else type(exc).__name__
            raise StateError(
                f"{self.path} is not a valid xvrd state file ({what}); "
                "move it aside to start afresh (the originals it records will not be restored)"
            ) from None
        if state.version not in SUPPORTED_VERSIONS:
            raise StateError(
                f"{self.path}: state version {state.version} is not supported (this xvrd "
                f"reads {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        return state

    def save(self, state: PersistedState) -> None:
        """Write atomically: readers see the old file or the new one, never half of one.
        Raises StateError when the directory or the file cannot be written."""
        if self.read_only:
            return
        try:
            self._write(state)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc}") from None

    def _write(self, state: PersistedState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        data = json.dumps(state.model_dump(), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _first_error(exc: ValidationError) -> str:
    """The first thing wrong, by field: ``overrides.<uuid>.weight: ... (got 100000)``."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    more = len(exc.errors()) - 1
    return f"{loc}: {err['msg']}{shown}" + (f"; and {more} more" if more else "")


LOCK_FILENAME = ".lock"


def lock_state_dir(directory: Path) -> int:
    """Hold the state directory for this process's lifetime; returns the lock's descriptor.

    Two daemons (or a daemon and a `--once`) on different sockets but one state directory
    would each rewrite the other's originals: the second is refused with StateDirBusy. The
    lock is an flock, so it goes when the process does, crashes included. StateError when
    the directory cannot be made or written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(directory / LOCK_FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise StateError(f"cannot write the state directory {directory}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateDirBusy(f"another xvrd uses the state directory {directory}") from None
    return fd
