"""What the control socket can ask of the daemon: the seam between server and daemon.

The socket server (``xvrd.control.server``) authenticates a request and calls one of these
methods; the daemon implements them. Keeping this a Protocol lets the server be tested with
a small fake and lets the daemon be driven without a socket.

Domains are named by what an operator types: a name (``web1``), a UUID, or a domain ID.
Every method returns a short human message on success and raises `ControlError` otherwise;
none changes anything when it fails.
"""

from __future__ import annotations

from typing import Any, Protocol

#: Version of the request/response protocol and of the status document.
PROTOCOL_VERSION = 1


class ControlError(Exception):
    """A request the daemon refused; ``code`` is machine-readable, the message is for people.

    Codes: ``not_found`` (no such domain), ``invalid`` (a value outside what is accepted),
    ``unsupported`` (the host cannot do it), ``unavailable`` (the host cannot be reached now),
    ``forbidden`` (the caller may not change settings), ``bad_request`` (malformed request).
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ControlAPI(Protocol):
    """The operations the control socket exposes. Only `status` is a read."""

    def status(self) -> dict[str, Any]:
        """The status document (see STATUS_FIELDS); JSON-serialisable."""
        ...

    def set_weight(self, domain: str, weight: int) -> str:
        """Pin a domain's weight manually; the automatic policy never changes it."""
        ...

    def unset(self, domain: str) -> str:
        """Drop a manual weight and put the domain's original weight back (its affinity
        stays); the policy may manage it again. The override of a domain that is not
        running is dropped by its name or UUID."""
        ...

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        """Pin dom0's vCPUs to ``cpus`` and keep domUs off them (a manual override)."""
        ...

    def unpin_dom0(self) -> str:
        """Drop the manual dom0 pinning and restore dom0's and the domUs' original affinity."""
        ...

    def hold(self, reason: str) -> str:
        """Stop all automatic changes until `resume`."""
        ...

    def resume(self) -> str:
        """Allow automatic changes again."""
        ...

    def restore(self) -> str:
        """Put back every original setting the daemon changed, drop the manual weights and
        the manual dom0 pinning, then hold."""
        ...


#: Top-level keys of the status document (values may be null before the first full tick).
STATUS_FIELDS = (
    "version",  # PROTOCOL_VERSION
    "backend",  # {kind, uri, scheduler, cpus (count), cpu_ids (online), connected, last_error}
    "interval_s",
    "mode",  # "auto" or "advise"
    "policy",  # the policy's name: "adaptive" or "noop"
    "ticks",  # completed ticks
    "last_tick_age_s",  # seconds since the last complete tick, null before one
    "hold",  # {held, reason, since}
    "dom0_pin",  # manual dom0 pinning: list of CPUs, or null
    "domains",  # list of DOMAIN_FIELDS objects, dom0 first, creation order
    "unreadable",  # running domains the last tick could not read: [{name, domid, uuid, error}]
    # every manual weight, its domain running or not, by name: [{name, uuid, weight, running
    # (null before the first tick)}]
    "overrides",
    "dom0_cpu_pct",
    "idle_pct",
    "aggregate_mbps",
    "jain",
    "efficiency",
    "findings",  # [{kind, summary, evidence: {...}}]
    # most recent last: [{time, domain, setting, old, new, reason, applied, error}]
    "actions",
    # changes the policy tried, most recent last: [{time, change, kept, objective_before_mbps,
    # objective_after_mbps, rule, aggregate_before_mbps, jain_before, aggregate_after_mbps,
    # jain_after, not_undone: [domain names a manual setting kept], summary}]
    "verdicts",
)

#: Keys of each domain in the status document.
DOMAIN_FIELDS = (
    "name",
    "domid",
    "uuid",
    "weight",
    "weight_source",  # "default" (untouched), "auto" (set by the policy), "manual" (override)
    "cap",
    "pinning",  # list per vCPU of lists of CPUs
    "rx_mbps",  # null until two samples
    "tx_mbps",
    "cpu_pct",  # % of the whole host
    "network_active",
)
