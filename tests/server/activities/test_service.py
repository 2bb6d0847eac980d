"""The ActivityService over a real gRPC channel: records survive restarts, errors map to codes,
the registry's activities are synced, and keys need the activities permission."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.server.test_service import event, settings_for
from uptake.v1 import activity_pb2, activity_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from uptake_server.app import Service
from uptake_server.security.keyfile import KeyFile

DAY_MS = 86_400_000
REGISTRY = {
    "tools": {"wiki": {"name": "Wiki"}, "crm": {"name": "CRM"}},
    "org_units": ["sales", "support"],
    "activities": [
        {
            "id": "wiki-launch-mail",
            "tool": "wiki",
            "kind": "communication",
            "title": "Launch mail",
            "start": "2026-01-12",
        }
    ],
}


def write_registry(path: Path, document: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump(document))
    return str(path)


def new_activity(**changes: object) -> activity_pb2.Activity:
    now = int(time.time() * 1000)
    fields: dict[str, object] = {
        "tool": "wiki",
        "kind": activity_pb2.ACTIVITY_KIND_ROADSHOW,
        "org_units": ["sales"],
        "start_ms": now - 20 * DAY_MS,
        "end_ms": now - 19 * DAY_MS,
        "title": "Wiki roadshow",
        "link": "https://intranet.example/roadshow",
    }
    fields.update(changes)
    return activity_pb2.Activity(**fields)  # type: ignore[arg-type]


def refusal(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """Return the code, message and the fields a BadRequest detail names."""
    status = rpc_status.from_call(call)  # type: ignore[arg-type]
    fields = []
    for detail in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return call.code(), call.details() or "", fields  # type: ignore[attr-defined]


@pytest.fixture
def registry_file(tmp_path: Path) -> str:
    return write_registry(tmp_path / "registry.yaml", REGISTRY)


@pytest.fixture
def service(tmp_path: Path, registry_file: str) -> Iterator[Service]:
    svc = Service(settings_for(tmp_path / "var", registry_file=registry_file, kpi_enabled=False))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def stub(service: Service) -> Iterator[activity_pb2_grpc.ActivityServiceStub]:
    with grpc.insecure_channel(service.grpc_target) as channel:
        yield activity_pb2_grpc.ActivityServiceStub(channel)


def listed(stub: activity_pb2_grpc.ActivityServiceStub, **request: object) -> list[str]:
    reply = stub.ListActivities(activity_pb2.ListActivitiesRequest(**request), timeout=10)  # type: ignore[arg-type]
    return [a.id for a in reply.activities]


def test_activities_survive_a_restart(tmp_path: Path, registry_file: str) -> None:
    settings = settings_for(tmp_path / "var", registry_file=registry_file, kpi_enabled=False)
    first = Service(settings)
    first.start()
    try:
        with grpc.insecure_channel(first.grpc_target) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            added = stub.AddActivity(
                activity_pb2.AddActivityRequest(activity=new_activity()), timeout=10
            ).activity
            kept = stub.AddActivity(
                activity_pb2.AddActivityRequest(activity=new_activity(id="kept")), timeout=10
            ).activity
    finally:
        first.stop()
    assert added.id.startswith("roadshow-wiki-") and added.source == "api"
    assert added.recorded_ms > 0
    second = Service(settings)
    second.start()
    try:
        with grpc.insecure_channel(second.grpc_target) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            assert set(listed(stub)) == {added.id, "kept", "wiki-launch-mail"}
            (again,) = [
                a
                for a in stub.ListActivities(
                    activity_pb2.ListActivitiesRequest(), timeout=10
                ).activities
                if a.id == "kept"
            ]
            assert again == kept
            stub.RemoveActivity(activity_pb2.RemoveActivityRequest(id=added.id), timeout=10)
    finally:
        second.stop()
    third = Service(settings)
    third.start()
    try:
        with grpc.insecure_channel(third.grpc_target) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            assert set(listed(stub)) == {"kept", "wiki-launch-mail"}
    finally:
        third.stop()


def test_org_units_and_tools_seen_in_events_may_be_targeted(
    service: Service, stub: activity_pb2_grpc.ActivityServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as before:
        stub.AddActivity(
            activity_pb2.AddActivityRequest(
                activity=new_activity(tool="forms", org_units=["marketing"])
            ),
            timeout=10,
        )
    assert refusal(before.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown tool 'forms'" in refusal(before.value)[1]
    with grpc.insecure_channel(service.grpc_target) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        reply = ingest.Ingest(
            ingest_pb2.IngestRequest(events=[event(tool="forms", org_unit="marketing")]),
            timeout=10,
        )
    assert reply.accepted == 1
    added = stub.AddActivity(
        activity_pb2.AddActivityRequest(
            activity=new_activity(tool="forms", org_units=["marketing"])
        ),
        timeout=10,
    ).activity
    assert (added.tool, list(added.org_units)) == ("forms", ["marketing"])


@pytest.mark.parametrize(
    ("activity", "code", "field", "message"),
    [
        (
            new_activity(org_units=["sales", "legal"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "org_units[1]",
            "unknown org unit 'legal'",
        ),
        (
            new_activity(kind=activity_pb2.ACTIVITY_KIND_UNSPECIFIED),
            grpc.StatusCode.INVALID_ARGUMENT,
            "activity.kind",
            "activity.kind is missing",
        ),
        (
            new_activity(start_ms=2_000_000_000_000, end_ms=1_900_000_000_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "end_ms",
            "is before start",
        ),
        (
            new_activity(title="x" * 201),
            grpc.StatusCode.INVALID_ARGUMENT,
            "title",
            "at most 200",
        ),
        (
            new_activity(id="wiki-launch-mail"),
            grpc.StatusCode.ALREADY_EXISTS,
            None,
            "an activity with id 'wiki-launch-mail' exists",
        ),
    ],
)
def test_bad_additions_get_clear_status_codes(
    stub: activity_pb2_grpc.ActivityServiceStub,
    activity: activity_pb2.Activity,
    code: grpc.StatusCode,
    field: str | None,
    message: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.AddActivity(activity_pb2.AddActivityRequest(activity=activity), timeout=10)
    got_code, got_message, fields = refusal(caught.value)
    assert got_code == code
    assert message in got_message
    assert fields == ([field] if field else [])


def test_removal_and_listing_refusals(stub: activity_pb2_grpc.ActivityServiceStub) -> None:
    cases = [
        ("nope", grpc.StatusCode.NOT_FOUND, "no activity with id 'nope'"),
        (
            "wiki-launch-mail",
            grpc.StatusCode.FAILED_PRECONDITION,
            "comes from the tool registry file; remove it there",
        ),
    ]
    for activity_id, code, message in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.RemoveActivity(activity_pb2.RemoveActivityRequest(id=activity_id), timeout=10)
        got_code, got_message, _ = refusal(caught.value)
        assert (got_code, message in got_message) == (code, True)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListActivities(activity_pb2.ListActivitiesRequest(limit=1001), timeout=10)
    assert refusal(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit is at most 1000",
        ["limit"],
    )


def test_the_registry_file_is_the_truth_for_its_activities(
    tmp_path: Path, registry_file: str
) -> None:
    settings = settings_for(tmp_path / "var", registry_file=registry_file, kpi_enabled=False)
    for document, expected in (
        (REGISTRY, {"wiki-launch-mail": "Launch mail"}),
        (
            {
                **REGISTRY,
                "activities": [
                    {**REGISTRY["activities"][0], "title": "Launch mail, resent"},  # type: ignore[index]
                    {
                        "id": "crm-coaching",
                        "tool": "crm",
                        "kind": "coaching",
                        "title": "Coaching",
                        "start": "2026-02-01T10:00:00Z",
                        "org_units": ["support"],
                    },
                ],
            },
            {"wiki-launch-mail": "Launch mail, resent", "crm-coaching": "Coaching"},
        ),
        ({**REGISTRY, "activities": []}, {}),
    ):
        write_registry(Path(registry_file), document)
        svc = Service(settings)
        svc.start()
        try:
            with grpc.insecure_channel(svc.grpc_target) as channel:
                stub = activity_pb2_grpc.ActivityServiceStub(channel)
                reply = stub.ListActivities(activity_pb2.ListActivitiesRequest(), timeout=10)
        finally:
            svc.stop()
        assert {a.id: a.title for a in reply.activities} == expected
        assert all(a.source == "registry" for a in reply.activities)


def test_a_registry_activity_with_an_unknown_unit_stops_the_start(tmp_path: Path) -> None:
    document = {
        **REGISTRY,
        "activities": [{**REGISTRY["activities"][0], "org_units": ["legal"]}],  # type: ignore[index]
    }
    path = write_registry(tmp_path / "registry.yaml", document)
    with pytest.raises(Exception, match=r"activity 'wiki-launch-mail' field org_units\[0\]"):
        Service(settings_for(tmp_path / "var", registry_file=path, kpi_enabled=False))


def test_report_gives_the_effect_with_the_minimum_group_size(
    stub: activity_pb2_grpc.ActivityServiceStub,
) -> None:
    stub.AddActivity(activity_pb2.AddActivityRequest(activity=new_activity(id="r1")), timeout=10)
    reply = stub.ReportActivities(activity_pb2.ReportActivitiesRequest(id="r1"), timeout=10)
    assert reply.min_group_size == 5
    (effect,) = reply.effects
    assert effect.activity.id == "r1"
    # No events: both groups are empty, so nothing can be reported.
    assert effect.status == activity_pb2.EFFECT_STATUS_WITHHELD
    assert "fewer than k=5" in effect.reason
    assert effect.before_last_day < effect.after_first_day


# API keys -------------------------------------------------------------------------


@pytest.fixture
def secured(tmp_path: Path, registry_file: str) -> Iterator[tuple[Service, dict[str, str]]]:
    path = tmp_path / "keys.yaml"
    file = KeyFile(path, setting="UPTAKE_API_KEYS_FILE")
    keys = {
        name: file.create(name=name, tools=tools, permissions=permissions)[0]
        for name, tools, permissions in (
            ("ingest-only", ["*"], None),
            ("wiki-activities", ["wiki"], ["activities"]),
            ("both", ["*"], ["ingest", "activities"]),
        )
    }
    settings = settings_for(
        tmp_path / "var",
        registry_file=registry_file,
        kpi_enabled=False,
        dev=False,
        pseudonym_key=os.urandom(16).hex(),
        api_keys_file=str(path),
    )
    svc = Service(settings)
    svc.start()
    yield svc, keys
    svc.stop()


def test_keys_need_the_activities_permission_and_their_tool_scope(
    secured: tuple[Service, dict[str, str]],
) -> None:
    service, keys = secured

    def auth(name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {keys[name]}"),)

    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        add = activity_pb2.AddActivityRequest(activity=new_activity(tool="crm", id="crm-1"))
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (auth("ingest-only"), grpc.StatusCode.PERMISSION_DENIED),
            (auth("wiki-activities"), grpc.StatusCode.PERMISSION_DENIED),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                stub.AddActivity(add, metadata=metadata, timeout=10)
            assert caught.value.code() == code, caught.value  # type: ignore[attr-defined]
        assert "no activities permission" in str(
            _refused(
                lambda: stub.ListActivities(
                    activity_pb2.ListActivitiesRequest(), metadata=auth("ingest-only"), timeout=10
                )
            )
        )
        stub.AddActivity(add, metadata=auth("both"), timeout=10)
        wiki = activity_pb2.AddActivityRequest(activity=new_activity(id="wiki-1"))
        stub.AddActivity(wiki, metadata=auth("wiki-activities"), timeout=10)
        seen = stub.ListActivities(
            activity_pb2.ListActivitiesRequest(), metadata=auth("wiki-activities"), timeout=10
        )
        assert {a.id for a in seen.activities} == {"wiki-1", "wiki-launch-mail"}
        everything = stub.ListActivities(
            activity_pb2.ListActivitiesRequest(), metadata=auth("both"), timeout=10
        )
        assert {a.id for a in everything.activities} == {"wiki-1", "crm-1", "wiki-launch-mail"}
        with pytest.raises(grpc.RpcError) as caught:
            stub.RemoveActivity(
                activity_pb2.RemoveActivityRequest(id="crm-1"),
                metadata=auth("wiki-activities"),
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        # An activities-only key may not send events; the ingest keys still may.
        request = ingest_pb2.IngestRequest(events=[event()])
        with pytest.raises(grpc.RpcError) as caught:
            ingest.Ingest(request, metadata=auth("wiki-activities"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert "no ingest permission" in (caught.value.details() or "")  # type: ignore[attr-defined]
        assert ingest.Ingest(request, metadata=auth("ingest-only"), timeout=10).accepted == 1


def _refused(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    raise AssertionError("the call was not refused")
