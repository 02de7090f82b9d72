"""Scenario files: a simulated host, its domains and what happens over time, in TOML.

See ``simulator/scenarios/README.md`` for the format. Validation errors name the field and
what is accepted, e.g. ``domains[2].weight: Input should be greater than or equal to 1 (got 0)``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.engine import NS_PER_S

Workload = Literal["send", "receive", "forward", "tcp_rate", "burn", "ping", "idle"]
NETWORK_WORKLOADS = frozenset({"send", "receive", "forward", "tcp_rate"})

Weight = Annotated[int, Field(ge=1, le=65535)]
#: A duration or warm-up: up to a day each.
MAX_SPAN_S = 86_400.0
#: A moment in a run (a start, a stop, a phase): within the longest warm-up and duration.
Moment = Annotated[float, Field(ge=0, le=2 * MAX_SPAN_S)]
#: A cap in % of one CPU: Xen allows up to 100 per vCPU, and a domU has one here.
DomUCap = Annotated[int, Field(ge=0, le=100, description="% of one CPU, 0 = no cap")]

#: Workload parameters and the workloads that read them: given for another, they are refused
#: rather than silently ignored.
PARAMETERS = {
    "rate_mbps": ("tcp_rate",),
    "direction": ("tcp_rate",),
    "duty": ("burn",),
    "interval_ms": ("ping",),
}


class ScenarioError(ValueError):
    """A scenario that cannot be loaded, with one message naming the field."""


class _Strict(BaseModel):
    # strict: "256" or true where a number belongs is refused, not converted; an integer is
    # still a float. Floats must be finite (TOML has inf).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class HostSpec(_Strict):
    """The physical host."""

    pcpus: int = Field(2, ge=1, le=256, description="physical CPUs")
    nics: int = Field(1, ge=1, le=8, description="physical NICs (forwarding needs 2)")
    link_mbps: float = Field(1000.0, ge=1, le=100_000, description="line rate of each NIC")
    scheduler: Literal["credit"] = "credit"
    dom0_weight: Weight = 256
    dom0_cap: int = Field(0, ge=0, description="% of one CPU, 0 = no cap; 100 per vCPU at most")
    dom0_vcpus: int = Field(1, ge=1, le=64)
    dom0_pinning: list[int] | None = Field(None, description="pCPUs dom0's vCPUs may run on")
    dom0_kernel: Literal["2.6.18-xen", "2.6.16-xen"] = Field(
        "2.6.18-xen",
        description=(
            "dom0's Linux: 2.6.18-xen (Xen 3.1.0) handles one event port per upcall; "
            "2.6.16-xen (Xen 3.0.4) lets an event during softirqs enter a nested upcall"
        ),
    )

    @model_validator(mode="after")
    def _cap_fits(self) -> HostSpec:
        if self.dom0_cap > 100 * self.dom0_vcpus:
            raise ValueError(
                f"dom0_cap: at most 100 per vCPU, {100 * self.dom0_vcpus} for "
                f"{self.dom0_vcpus} (got {self.dom0_cap})"
            )
        return self


class WorkloadSpec(_Strict):
    """What a domU runs and its parameters."""

    workload: Workload = "idle"
    rate_mbps: float | None = Field(
        None, gt=0, le=100_000, description="tcp_rate: application rate"
    )
    direction: Literal["send", "receive"] = Field("receive", description="tcp_rate direction")
    duty: float = Field(1.0, ge=0.0, le=1.0, description="burn: share of one CPU")
    interval_ms: float = Field(
        100.0, ge=0.001, le=3_600_000, description="ping: time between echo requests"
    )

    @model_validator(mode="after")
    def _parameters_fit(self) -> WorkloadSpec:
        self._check_workload_parameters()
        return self

    def _check_workload_parameters(self) -> None:
        if self.workload == "tcp_rate" and self.rate_mbps is None:
            raise ValueError("rate_mbps is required for workload 'tcp_rate'")
        for key, workloads in PARAMETERS.items():
            if key in self.model_fields_set and self.workload not in workloads:
                raise ValueError(
                    f"{key}: only for workload {', '.join(workloads)}, not {self.workload!r}"
                )


class DomainSpec(WorkloadSpec):
    """One domU, or ``count`` identical ones named name1..nameN."""

    name: str = Field("dom", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int = Field(1, ge=1, le=1024)
    weight: Weight = 256
    cap: DomUCap = 0
    vcpus: int = Field(1, ge=1, le=1, description="one vCPU per domU is modelled")
    pinning: list[int] | None = None
    start_s: Moment = 0.0
    stop_s: Moment | None = None

    @model_validator(mode="after")
    def _stops_after_start(self) -> DomainSpec:
        if self.stop_s is not None and self.stop_s <= self.start_s:
            raise ValueError(f"stop_s: must be after start_s ({self.start_s:g})")
        return self

    def names(self) -> list[str]:
        """Names of the domains this entry creates: ``name``, or name1..nameN."""
        if self.count == 1:
            return [self.name]
        return [f"{self.name}{i}" for i in range(1, self.count + 1)]


class PhaseSpec(WorkloadSpec):
    """A change at ``at_s``: start or stop a domain, change its workload, weight or cap."""

    at_s: Moment
    action: Literal["start", "stop", "workload", "weight", "cap"]
    domain: str = Field(min_length=1)
    weight: Weight | None = None
    cap: DomUCap | None = None

    def _check_workload_parameters(self) -> None:
        """Each action takes its own keys: a workload and its parameters only with
        'workload' (which needs one), a weight only with 'weight', a cap only with 'cap'."""
        given = self.model_fields_set
        if self.action == "workload":
            if "workload" not in given:
                raise ValueError("action 'workload' needs workload")
            super()._check_workload_parameters()
        for key in ("workload", *PARAMETERS):
            if key in given and self.action != "workload":
                raise ValueError(f"{key}: only with action 'workload', not {self.action!r}")
        for key in ("weight", "cap"):
            if self.action == key and key not in given:
                raise ValueError(f"action {key!r} needs {key}")
            if key in given and self.action != key:
                raise ValueError(f"{key}: only with action {key!r}, not {self.action!r}")


class Scenario(_Strict):
    """A complete experiment."""

    name: str = Field("scenario", min_length=1)
    description: str = ""
    duration_s: float = Field(30.0, gt=0, le=MAX_SPAN_S)
    warmup_s: float = Field(5.0, ge=0, le=MAX_SPAN_S)
    host: HostSpec = HostSpec()
    domains: list[DomainSpec] = Field(default_factory=list)
    phases: list[PhaseSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """What no single field shows: each message names its field in full."""
        if not self.domains:
            raise ValueError("domains: at least one domU is needed")
        names = self.domain_names()
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"domains: names must be unique ({', '.join(map(repr, twice))} twice)")
        if DOM0_NAME in names:
            raise ValueError(f"domains: {DOM0_NAME!r} is dom0's name; the host has its own dom0")
        cpus = range(self.host.pcpus)
        for i, d in enumerate(self.domains):
            if d.pinning is not None and (not d.pinning or any(c not in cpus for c in d.pinning)):
                raise ValueError(f"domains[{i}].pinning: must list CPUs in 0..{cpus[-1]}")
            if d.workload == "forward" and self.host.nics < 2:
                raise ValueError(f"domains[{i}].workload: forward needs host.nics >= 2")
        hp = self.host.dom0_pinning
        if hp is not None and (not hp or any(c not in cpus for c in hp)):
            raise ValueError(f"host.dom0_pinning: must list CPUs in 0..{cpus[-1]}")
        for i, p in enumerate(self.phases):
            if p.domain not in names:
                raise ValueError(f"phases[{i}].domain: no domain named {p.domain!r}")
            if p.workload == "forward" and self.host.nics < 2:
                raise ValueError(f"phases[{i}].workload: forward needs host.nics >= 2")
        self._check_lifecycles()
        return self

    def _check_lifecycles(self) -> None:
        """Each start must find its domain stopped and each other event find it running,
        the domains' own ``start_s`` and ``stop_s`` included: the host would skip one that
        does not, unseen."""
        # The host's order: every domain's start and stop, then the phases, each group in
        # file order, at the same nanosecond as the host schedules them.
        events: list[tuple[int, int, str, str, str, float]] = []
        for i, d in enumerate(self.domains):
            for name in d.names():
                events.append(
                    (
                        moment_ns(d.start_s),
                        len(events),
                        name,
                        "start",
                        f"domains[{i}].start_s",
                        d.start_s,
                    )
                )
                if d.stop_s is not None:
                    events.append(
                        (
                            moment_ns(d.stop_s),
                            len(events),
                            name,
                            "stop",
                            f"domains[{i}].stop_s",
                            d.stop_s,
                        )
                    )
        for i, p in enumerate(self.phases):
            events.append(
                (moment_ns(p.at_s), len(events), p.domain, p.action, f"phases[{i}]", p.at_s)
            )
        running: set[str] = set()
        for _, _, name, action, field, at in sorted(events):
            if (action == "start") == (name in running):
                state = "already running" if name in running else "not running"
                raise ValueError(
                    f"{field}: {name!r} is {state} at {at:g} s, so {action!r} would do nothing"
                )
            if action == "start":
                running.add(name)
            elif action == "stop":
                running.discard(name)

    def late_moments(self) -> list[str]:
        """Starts, stops and phases at or after the run's end (warm-up plus duration): as
        written in a file, each is a mistake, since it would never happen."""
        end = self.warmup_s + self.duration_s
        late = [
            f"domains[{i}].{key} = {at:g}"
            for i, d in enumerate(self.domains)
            for key, at in (("start_s", d.start_s), ("stop_s", d.stop_s))
            if at is not None and at >= end
        ]
        late += [
            f"phases[{i}].at_s = {p.at_s:g}" for i, p in enumerate(self.phases) if p.at_s >= end
        ]
        return late

    def domain_names(self) -> list[str]:
        return [name for d in self.domains for name in d.names()]


#: The name Xen gives dom0, which every simulated host has: no domU may take it.
DOM0_NAME = "Domain-0"


def moment_ns(seconds: float) -> int:
    """A moment in whole nanoseconds, as the simulated host schedules it."""
    return int(seconds * NS_PER_S)


def _accepted(loc: tuple[int | str, ...]) -> str:
    """The fields the table an unknown field was found in accepts."""
    sections: dict[str, type[BaseModel]] = {
        "host": HostSpec,
        "domains": DomainSpec,
        "phases": PhaseSpec,
    }
    model = sections.get(str(loc[0]), Scenario) if len(loc) > 1 else Scenario
    return ", ".join(sorted(model.model_fields))


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field; accepted: {_accepted(err['loc'])}"
        got = err.get("input")
        shown = f" (got {got!r})" if loc and not isinstance(got, dict | list) else ""
        # A check across fields has no location: its message starts with the field it names.
        parts.append(f"{loc}: {msg}{shown}" if loc else msg)
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
    scenario = parse_scenario(data, str(p))
    late = scenario.late_moments()
    if late:
        end = scenario.warmup_s + scenario.duration_s
        raise ScenarioError(
            f"{p}: {'; '.join(late)}: never happens, the run ends at {end:g} s "
            "(warmup_s + duration_s)"
        )
    return scenario


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
