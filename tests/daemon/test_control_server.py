"""Who may change what, and how bad requests are answered, without a daemon behind."""

from __future__ import annotations

import grp
import json
from pathlib import Path
from typing import Any

from xvrd.control.api import ControlError
from xvrd.control.protocol import encode_request
from xvrd.control.server import ControlServer, Peer, is_admin


class RecordingAPI:
    """Our own ControlAPI boundary: records the calls that reach it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        self.calls.append(("status", None))
        return {"version": 1}

    def set_weight(self, domain: str, weight: int) -> str:
        if weight < 1:
            raise ControlError("invalid", "weight must be between 1 and 65535")
        self.calls.append(("set_weight", (domain, weight)))
        return "ok"

    def unset(self, domain: str) -> str:
        self.calls.append(("unset", domain))
        return "ok"

    def pin_dom0(self, cpus: frozenset[int]) -> str:
        self.calls.append(("pin_dom0", cpus))
        return "ok"

    def unpin_dom0(self) -> str:
        self.calls.append(("unpin_dom0", None))
        return "ok"

    def hold(self, reason: str) -> str:
        self.calls.append(("hold", reason))
        return "ok"

    def resume(self) -> str:
        self.calls.append(("resume", None))
        return "ok"

    def restore(self) -> str:
        self.calls.append(("restore", None))
        return "ok"


NOBODY = Peer(pid=1, uid=65534, gid=65534)
ROOT = Peer(pid=1, uid=0, gid=0)


def answer(server: ControlServer, raw: bytes, peer: Peer) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(server.answer(raw, peer))
    return result


def test_reads_open_changes_need_admin(tmp_path: Path) -> None:
    """Anyone connected may read; only root or the admin group may change."""
    api = RecordingAPI()
    server = ControlServer(tmp_path / "s", api, admin_group="root")
    assert answer(server, encode_request("status"), NOBODY)["ok"]
    refused = answer(server, encode_request("hold", reason="x"), NOBODY)
    assert refused["error"]["code"] == "forbidden"
    assert api.calls == [("status", None)]
    assert answer(server, encode_request("hold", reason="x"), ROOT)["ok"]
    assert api.calls[-1] == ("hold", "x")


def test_admin_group_by_primary_gid() -> None:
    """A peer whose primary group is the admin group may change; no admin group: root only."""
    nogroup = grp.getgrgid(65534).gr_name
    assert is_admin(NOBODY, nogroup)
    assert not is_admin(NOBODY, "root")
    assert not is_admin(NOBODY, None)
    assert is_admin(ROOT, None)


def test_bad_requests() -> None:
    """Each malformed request gets bad_request and reaches nothing."""
    api = RecordingAPI()
    server = ControlServer(Path("/nonexistent"), api)
    for raw in (
        b"\xff\xfe",
        b"{}",
        b'{"version": 1, "command": 5}',
        b'{"version": 1, "command": "pin_dom0", "args": {"cpus": ["a"]}}',
        b'{"version": 1, "command": "set_weight", "args": {"domain": "x", "weight": true}}',
        b'{"version": 1, "command": "shutdown", "args": {}}',
    ):
        assert answer(server, raw, ROOT)["error"]["code"] == "bad_request", raw
    assert api.calls == []
    invalid = answer(server, encode_request("set_weight", domain="x", weight=0), ROOT)
    assert invalid["error"] == {"code": "invalid", "message": "weight must be between 1 and 65535"}
