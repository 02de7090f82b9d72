"""Scenario files: a simulated host, its domains and what happens over time, in TOML.

See ``simulator/scenarios/README.md`` for the format. Validation errors name the field and
what is accepted, e.g. ``domains[2].weight: Input should be greater than or equal to 1 (got 0)``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Workload = Literal["send", "receive", "forward", "tcp_rate", "burn", "ping", "idle"]
NETWORK_WORKLOADS = frozenset({"send", "receive", "forward", "tcp_rate"})

Weight = Annotated[int, Field(ge=1, le=65535)]


class ScenarioError(ValueError):
    """A scenario that cannot be loaded, with one message naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Strict):
    """The physical host."""

    pcpus: int = Field(2, ge=1, le=256, description="physical CPUs")
    nics: int = Field(1, ge=1, le=8, description="physical NICs (forwarding needs 2)")
    link_mbps: float = Field(1000.0, gt=0, le=100_000, description="line rate of each NIC")
    scheduler: Literal["credit"] = "credit"
    dom0_weight: Weight = 256
    dom0_cap: int = Field(0, ge=0, description="% of one CPU, 0 = no cap")
    dom0_vcpus: int = Field(1, ge=1, le=64)
    dom0_pinning: list[int] | None = Field(None, description="pCPUs dom0's vCPUs may run on")
    dom0_kernel: Literal["2.6.18-xen", "2.6.16-xen"] = Field(
        "2.6.18-xen",
        description=(
            "dom0's Linux: 2.6.18-xen (Xen 3.1.0) handles one event port per upcall; "
            "2.6.16-xen (Xen 3.0.4) lets an event during softirqs enter a nested upcall"
        ),
    )


class WorkloadSpec(_Strict):
    """What a domU runs and its parameters."""

    workload: Workload = "idle"
    rate_mbps: float | None = Field(None, gt=0, description="tcp_rate: application rate")
    direction: Literal["send", "receive"] = Field("receive", description="tcp_rate direction")
    duty: float = Field(1.0, ge=0.0, le=1.0, description="burn: share of one CPU")
    interval_ms: float = Field(100.0, gt=0, description="ping: time between echo requests")

    @model_validator(mode="after")
    def _rate_needed(self) -> WorkloadSpec:
        if self.workload == "tcp_rate" and self.rate_mbps is None:
            raise ValueError("rate_mbps is required for workload 'tcp_rate'")
        return self


class DomainSpec(WorkloadSpec):
    """One domU, or ``count`` identical ones named name1..nameN."""

    name: str = Field("dom", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int = Field(1, ge=1, le=1024)
    weight: Weight = 256
    cap: int = Field(0, ge=0, description="% of one CPU, 0 = no cap")
    vcpus: int = Field(1, ge=1, le=1, description="one vCPU per domU is modelled")
    pinning: list[int] | None = None
    start_s: float = Field(0.0, ge=0)
    stop_s: float | None = Field(None, gt=0)

    def names(self) -> list[str]:
        """Names of the domains this entry creates: ``name``, or name1..nameN."""
        if self.count == 1:
            return [self.name]
        return [f"{self.name}{i}" for i in range(1, self.count + 1)]


class PhaseSpec(WorkloadSpec):
    """A change at ``at_s``: start or stop a domain, change its workload, weight or cap."""

    at_s: float = Field(ge=0)
    action: Literal["start", "stop", "workload", "weight", "cap"]
    domain: str = Field(min_length=1)
    weight: Weight | None = None
    cap: int | None = Field(None, ge=0)


class Scenario(_Strict):
    """A complete experiment."""

    name: str = "scenario"
    description: str = ""
    duration_s: float = Field(30.0, gt=0, le=86_400)
    warmup_s: float = Field(5.0, ge=0, le=86_400)
    host: HostSpec = HostSpec()
    domains: list[DomainSpec] = Field(default_factory=list)
    phases: list[PhaseSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = self.domain_names()
        if len(set(names)) != len(names):
            raise ValueError("domain names must be unique")
        cpus = range(self.host.pcpus)
        for d in self.domains:
            if d.pinning is not None and (not d.pinning or any(c not in cpus for c in d.pinning)):
                raise ValueError(f"domain {d.name!r}: pinning must list CPUs in 0..{cpus[-1]}")
            if d.workload == "forward" and self.host.nics < 2:
                raise ValueError(f"domain {d.name!r}: forward needs host.nics >= 2")
        hp = self.host.dom0_pinning
        if hp is not None and (not hp or any(c not in cpus for c in hp)):
            raise ValueError(f"host.dom0_pinning must list CPUs in 0..{cpus[-1]}")
        for p in self.phases:
            if p.domain not in names:
                raise ValueError(f"phase at {p.at_s}s names unknown domain {p.domain!r}")
            if p.action == "weight" and p.weight is None:
                raise ValueError(f"phase at {p.at_s}s: action 'weight' needs weight")
            if p.action == "cap" and p.cap is None:
                raise ValueError(f"phase at {p.at_s}s: action 'cap' needs cap")
        return self

    def domain_names(self) -> list[str]:
        return [name for d in self.domains for name in d.names()]


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = f" (got {got!r})" if loc and not isinstance(got, dict | list) else ""
        parts.append(f"{loc or 'scenario'}: {msg}{shown}")
    return "; ".join(parts)


def parse_scenario(data: dict[str, object], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_format_error(exc)}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    data.setdefault("name", p.stem)
    return parse_scenario(data, str(p))


def report_scenario(
    workload: str = "receive",
    *,
    n_domus: int = 8,
    dom0_weight: int = 256,
    domu_weight: int = 256,
    pcpus: int = 2,
    duration_s: float = 20.0,
    warmup_s: float = 5.0,
) -> Scenario:
    """The reference report's experiment: ``n_domus`` domUs each running one greedy flow."""
    if workload not in ("send", "receive", "forward"):
        raise ScenarioError(f"workload: must be one of send, receive, forward (got {workload!r})")
    return parse_scenario(
        {
            "name": f"{workload}-{n_domus}",
            "description": f"{workload} on {n_domus} domUs, one greedy TCP flow each",
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "host": {
                "pcpus": pcpus,
                "nics": 2 if workload == "forward" else 1,
                "dom0_weight": dom0_weight,
                # The report measured forwarding on Xen 3.0.4, send and receive on 3.1.0.
                "dom0_kernel": "2.6.16-xen" if workload == "forward" else "2.6.18-xen",
            },
            "domains": [
                {
                    "name": "dom1" if n_domus == 1 else "dom",
                    "count": n_domus,
                    "weight": domu_weight,
                    "workload": workload,
                }
            ],
        },
        "report scenario",
    )
