"""Member import and export: per-row results, a rejected row never stops the rest, the same
file twice changes nothing, a job resumes after a crash without applying a row twice, the
export's headers in Chinese and English, and other tenants see nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from contracts.ids import new_id
from members.coupons.models import Coupon
from members.imports import service
from members.imports.reader import XLSX
from members.models import Member, PointsEntry

from .conftest import Harness, eventually
from .test_coupons import issue, make_template
from .test_coupons import keyed as coupon_keyed

IMPORTER = frozenset({"members:import", "members:write"})
HEADER = ["手机号", "姓名", "生日", "会员等级", "标签", "期初积分"]


def csv_file(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def xlsx_file(rows: list[list[Any]], header: list[str] = HEADER) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def headers(harness: Harness, merchant: uuid.UUID, **extra: str) -> dict[str, str]:
    return {**harness.token(merchant, IMPORTER), **extra}


async def upload(
    harness: Harness, merchant: uuid.UUID, content: bytes, content_type: str = "text/csv"
) -> Any:
    response = await harness.client.post(
        "/v1/members/imports",
        content=content,
        headers=headers(harness, merchant, **{"Content-Type": content_type}),
    )
    assert response.status_code in (200, 202), response.text
    return response


async def finished(harness: Harness, merchant: uuid.UUID, import_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        response = await harness.client.get(
            f"/v1/members/imports/{import_id}", headers=headers(harness, merchant)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] == "completed" else None

    return await eventually(done)


async def row_results(harness: Harness, merchant: uuid.UUID, import_id: str) -> dict[int, Any]:
    response = await harness.client.get(
        f"/v1/members/imports/{import_id}/rows",
        params={"limit": 100},
        headers=headers(harness, merchant),
    )
    assert response.status_code == 200, response.text
    return {row["row"]: row for row in response.json()["items"]}


async def snapshot(harness: Harness, merchant: uuid.UUID) -> dict[str, Any]:
    """Every member and ledger entry of the merchant, to show nothing changed."""
    async with harness.app.state.database.transaction() as session:
        members = (
            await session.execute(
                sa.select(
                    Member.phone,
                    Member.name,
                    Member.birthday,
                    Member.level,
                    Member.tags,
                    Member.points_balance,
                    Member.version,
                ).where(Member.merchant_id == merchant)
            )
        ).all()
        entries = (
            await session.execute(
                sa.select(PointsEntry.member_id, PointsEntry.kind, PointsEntry.points).where(
                    PointsEntry.merchant_id == merchant
                )
            )
        ).all()
    return {"members": sorted(map(tuple, members)), "entries": sorted(map(tuple, entries))}


ROWS = [
    ["13800138001", "张三", "1990-05-01", "gold", "vip,coffee", "120"],
    ["+86 138-0013-8002", "Li", "", "", "", ""],
    ["12000138000", "bad phone", "", "", "", ""],
    ["13800138003", "x", "2999-01-01", "", "", ""],
    ["138 0013 8001", "again", "", "", "", ""],
    ["13800138004", "Wang", "1850-01-01", "", "", ""],
    ["13800138005", "", "", "", "", "abc"],
    ["13800138006", "New", "", "", "b、c", "50"],
    ["13800138007", "赵", "", "", "", ""],
]


async def test_import_reports_each_row_and_twice_changes_nothing(harness: Harness) -> None:
    merchant = new_id()
    existing = await harness.create_member(merchant, "+8613800138006", name="Old", tags=["a"])
    assert existing.status_code == 201
    content = csv_file(ROWS)
    response = await upload(harness, merchant, content)
    assert response.status_code == 202
    job = await finished(harness, merchant, response.json()["id"])
    assert job["total_rows"] == job["processed_rows"] == 9
    assert job["counts"] == {"created": 3, "updated": 1, "unchanged": 0, "rejected": 5}

    rows = await row_results(harness, merchant, job["id"])
    assert {n: (r["status"], r["code"]) for n, r in rows.items()} == {
        2: ("created", None),
        3: ("created", None),
        4: ("rejected", "invalid_phone"),
        5: ("rejected", "invalid_birthday"),
        6: ("rejected", "duplicate_phone_in_file"),
        7: ("rejected", "invalid_birthday"),
        8: ("rejected", "invalid_points"),
        9: ("updated", None),
        10: ("created", None),
    }
    assert rows[9]["changed"] == ["name", "tags", "opening_points"]
    assert rows[9]["member_id"] == existing.json()["id"]
    assert rows[3]["phone"] == "+8613800138002"

    token = harness.token(merchant)
    created = (
        await harness.client.get(f"/v1/members/{rows[2]['member_id']}", headers=token)
    ).json()
    assert (created["name"], created["birthday"], created["level"]) == (
        "张三",
        "1990-05-01",
        "gold",
    )
    assert (created["tags"], created["points_balance"]) == (["vip", "coffee"], 120)
    ledger = (
        await harness.client.get(f"/v1/members/{rows[2]['member_id']}/points", headers=token)
    ).json()
    [entry] = ledger["items"]
    assert (entry["kind"], entry["points"], entry["import_id"]) == ("import", 120, job["id"])
    updated = (
        await harness.client.get(f"/v1/members/{existing.json()['id']}", headers=token)
    ).json()
    assert (updated["name"], updated["tags"], updated["points_balance"]) == ("New", ["b", "c"], 50)

    before = await snapshot(harness, merchant)
    # The same file again is the same job.
    again = await upload(harness, merchant, content)
    assert again.status_code == 200
    assert again.json()["id"] == job["id"]
    # The same rows in another file (XLSX this time) change nothing either.
    other = await upload(harness, merchant, xlsx_file(ROWS), XLSX)
    assert other.status_code == 202
    second = await finished(harness, merchant, other.json()["id"])
    assert second["counts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 5}
    assert await snapshot(harness, merchant) == before

    # Another opening balance for a member who has one is refused, with the rest of its row.
    changed = await upload(
        harness, merchant, csv_file([["13800138001", "Renamed", "", "", "", "999"]])
    )
    third = await finished(harness, merchant, changed.json()["id"])
    [result] = (await row_results(harness, merchant, third["id"])).values()
    assert (result["status"], result["code"]) == ("rejected", "opening_points_already_imported")
    assert await snapshot(harness, merchant) == before


async def test_xlsx_cells_as_excel_keeps_them(harness: Harness) -> None:
    import datetime as dt

    merchant = new_id()
    content = xlsx_file(
        [[13800138011, "Excel", dt.datetime(1988, 2, 29), "silver", "x;y", 30]],
        header=["phone", "name", "birthday", "level", "tags", "opening_points"],
    )
    job = await finished(
        harness, merchant, (await upload(harness, merchant, content, XLSX)).json()["id"]
    )
    [row] = (await row_results(harness, merchant, job["id"])).values()
    assert row["status"] == "created", row
    member = (
        await harness.client.get(f"/v1/members/{row['member_id']}", headers=harness.token(merchant))
    ).json()
    assert (member["phone"], member["birthday"], member["tags"], member["points_balance"]) == (
        "+8613800138011",
        "1988-02-29",
        ["x", "y"],
        30,
    )


async def test_unreadable_files_are_refused(harness: Harness) -> None:
    merchant = new_id()
    for content, code in [
        (b"name,level\nLi,gold\n", "missing_column"),
        (csv_file([]), "empty_file"),
        (b"PK\x03\x04 not really a spreadsheet", "unreadable_file"),
    ]:
        response = await harness.client.post(
            "/v1/members/imports",
            content=content,
            headers=headers(harness, merchant, **{"Content-Type": "text/csv"}),
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code


class Crash(BaseException):
    """The process dies: nothing after it in the transaction commits."""


async def test_a_job_resumes_after_a_crash_without_applying_twice(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = harness.app.state.runtime
    database = harness.app.state.database
    await service.stop_worker(runtime)
    try:
        merchant = new_id()
        rows = [[f"1380013{9000 + i:04d}", f"m{i}", "", "", "", str(10 + i)] for i in range(5)]
        # The crash comes after the chunk created a member and booked its points.
        rows.insert(4, ["not a phone", "", "", "", "", ""])
        job_id = (await upload(harness, merchant, csv_file(rows))).json()["id"]

        async with database.transaction() as session:
            assert await service.process_chunk(session, 2, import_id=uuid.UUID(job_id))

        real_apply = service.apply_row
        calls = 0

        async def crashing(*args: Any, **kwargs: Any) -> service.RowResult:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise Crash
            return await real_apply(*args, **kwargs)

        monkeypatch.setattr(service, "apply_row", crashing)
        with pytest.raises(Crash):
            async with database.transaction() as session:
                await service.process_chunk(session, 2, import_id=uuid.UUID(job_id))
        monkeypatch.setattr(service, "apply_row", real_apply)

        progress = (
            await harness.client.get(
                f"/v1/members/imports/{job_id}", headers=headers(harness, merchant)
            )
        ).json()
        assert (progress["status"], progress["processed_rows"]) == ("running", 2)
        assert progress["counts"]["created"] == 2
        assert len((await snapshot(harness, merchant))["members"]) == 2
    finally:
        await service.start_worker(runtime)

    job = await finished(harness, merchant, job_id)
    assert job["counts"] == {"created": 5, "updated": 0, "unchanged": 0, "rejected": 1}
    assert sorted(await row_results(harness, merchant, job_id)) == [2, 3, 4, 5, 6, 7]
    state = await snapshot(harness, merchant)
    assert len(state["members"]) == 5
    assert sorted(points for _, kind, points in state["entries"]) == [10, 11, 12, 13, 14]
    assert sorted(m[5] for m in state["members"]) == [10, 11, 12, 13, 14]

    async def created_events() -> int:
        return sum(
            1
            for m in harness.bus.broker.messages("members.member")
            if str(merchant) in m.value.decode()
            and json.loads(m.value)["type"] == "members.member.created"
        )

    # One registration event per member: the crashed chunk's went with its transaction.
    assert await eventually(lambda: _at_least(created_events, 5)) == 5


async def test_two_workers_never_apply_one_chunk_twice(harness: Harness) -> None:
    runtime = harness.app.state.runtime
    database = harness.app.state.database
    await service.stop_worker(runtime)
    try:
        merchant = new_id()
        rows = [[f"1380013{9100 + i:04d}", "", "", "", "", "5"] for i in range(6)]
        job_id = uuid.UUID((await upload(harness, merchant, csv_file(rows))).json()["id"])

        async def worker() -> int:
            chunks = 0
            while True:
                async with database.transaction() as session:
                    if not await service.process_chunk(session, 2, import_id=job_id):
                        return chunks
                chunks += 1

        done = await asyncio.gather(worker(), worker(), worker())
    finally:
        await service.start_worker(runtime)
    assert sum(done) == 3
    job = await finished(harness, merchant, str(job_id))
    assert job["counts"] == {"created": 6, "updated": 0, "unchanged": 0, "rejected": 0}
    state = await snapshot(harness, merchant)
    assert sorted(m[5] for m in state["members"]) == [5] * 6
    assert len(state["entries"]) == 6


async def _at_least(probe: Any, count: int) -> int | None:
    found: int = await probe()
    return found if found >= count else None


async def test_idempotency_key_and_other_tenants(harness: Harness) -> None:
    merchant, intruder = new_id(), new_id()
    content = csv_file([["13800138021", "Key", "", "", "", ""]])
    key = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "text/csv"}
    first = await harness.client.post(
        "/v1/members/imports", content=content, headers=headers(harness, merchant, **key)
    )
    replay = await harness.client.post(
        "/v1/members/imports", content=content, headers=headers(harness, merchant, **key)
    )
    assert first.status_code == replay.status_code == 202
    assert replay.json()["id"] == first.json()["id"]
    job_id = first.json()["id"]
    await finished(harness, merchant, job_id)

    for url in (f"/v1/members/imports/{job_id}", f"/v1/members/imports/{job_id}/rows"):
        response = await harness.client.get(url, headers=headers(harness, intruder))
        assert response.status_code == 404, url
        assert response.json()["code"] == "import_not_found"
    # The same file is a new job for another merchant, and touches only that merchant.
    theirs = await upload(harness, intruder, content)
    assert theirs.status_code == 202
    assert theirs.json()["id"] != job_id
    await finished(harness, intruder, theirs.json()["id"])

    writer = harness.token(merchant, frozenset({"members:write"}))
    denied = await harness.client.post(
        "/v1/members/imports", content=content, headers={**writer, "Content-Type": "text/csv"}
    )
    assert denied.status_code == 403
    assert (await harness.client.get("/v1/members/export", headers=writer)).status_code == 403


async def test_export_headers_by_language_and_it_imports_back(harness: Harness) -> None:
    merchant = new_id()
    await harness.create_member(merchant, "+8613800138031", name="=cmd", tags=["vip", "tea"])
    await harness.create_member(merchant, "+8613800138032", birthday="1991-01-02", level="gold")
    exporter = harness.token(merchant, frozenset({"members:export"}))

    zh = await harness.client.get("/v1/members/export", headers=exporter)
    assert zh.status_code == 200
    assert zh.headers["content-language"] == "zh-CN"
    assert zh.content.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
    assert lines[0] == [
        "会员ID",
        "手机号",
        "姓名",
        "生日",
        "会员等级",
        "标签",
        "积分余额",
        "可用优惠券数",
        "可用优惠券码",
        "注册时间",
    ]
    assert [line[1:9] for line in lines[1:]] == [
        # Text a spreadsheet would run as a formula keeps an apostrophe in front.
        ["'+8613800138031", "'=cmd", "", "", "vip,tea", "0", "0", ""],
        ["'+8613800138032", "", "1991-01-02", "gold", "", "0", "0", ""],
    ]

    en = await harness.client.get(
        "/v1/members/export", headers={**exporter, "Accept-Language": "en-US,en;q=0.9"}
    )
    assert en.headers["content-language"] == "en"
    assert en.content.decode("utf-8-sig").splitlines()[0] == (
        "Member ID,Phone,Name,Birthday,Level,Tags,Points balance,Usable coupons,"
        "Usable coupon codes,Registered at"
    )

    xlsx = await harness.client.get(
        "/v1/members/export", params={"format": "xlsx", "lang": "en"}, headers=exporter
    )
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:3] == ("Member ID", "Phone", "Name")
    assert len(values) == 3

    # The exported file, as it is, imports back without a change.
    before = await snapshot(harness, merchant)
    for content, kind in ((zh.content, "text/csv"), (xlsx.content, XLSX)):
        job = await finished(
            harness, merchant, (await upload(harness, merchant, content, kind)).json()["id"]
        )
        assert job["counts"]["unchanged"] == 2, job
    assert await snapshot(harness, merchant) == before


async def test_export_lists_usable_coupons_and_import_leaves_them(harness: Harness) -> None:
    merchant = new_id()
    holder = (await harness.create_member(merchant, "+8613800138041")).json()
    none = (await harness.create_member(merchant, "+8613800138042")).json()
    template = await make_template(harness, merchant)
    issued = [
        (await issue(harness, merchant, template["id"], holder["id"])).json() for _ in range(4)
    ]
    voided = await harness.client.post(
        f"/v1/members/{holder['id']}/coupons/{issued[1]['id']}/void",
        json={"reason": "mistake"},
        headers=coupon_keyed(harness.token(merchant)),
    )
    assert voided.status_code == 200, voided.text
    async with harness.app.state.database.transaction() as session:
        # One expired yesterday, one is held by an open order.
        await session.execute(
            sa.update(Coupon)
            .where(Coupon.id == uuid.UUID(issued[2]["id"]))
            .values(valid_until=sa.func.now() - sa.text("interval '1 day'"))
        )
        await session.execute(
            sa.update(Coupon)
            .where(Coupon.id == uuid.UUID(issued[3]["id"]))
            .values(state="reserved", order_id=new_id(), sequence=1)
        )
    # Another merchant's coupons never show.
    other = new_id()
    stranger = (await harness.create_member(other, "+8613800138041")).json()
    other_template = await make_template(harness, other)
    await issue(harness, other, other_template["id"], stranger["id"])
    exporter = harness.token(merchant, frozenset({"members:export"}))

    exported = await harness.client.get(
        "/v1/members/export", params={"lang": "en"}, headers=exporter
    )
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    by_id = {row["Member ID"]: row for row in rows}
    assert set(by_id) == {holder["id"], none["id"]}
    assert by_id[holder["id"]]["Usable coupons"] == "1"
    assert by_id[holder["id"]]["Usable coupon codes"] == issued[0]["code"]
    assert (by_id[none["id"]]["Usable coupons"], by_id[none["id"]]["Usable coupon codes"]) == (
        "0",
        "",
    )

    # Two usable ones: both codes, soonest to expire first.
    second = (await issue(harness, merchant, template["id"], holder["id"])).json()
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.update(Coupon)
            .where(Coupon.id == uuid.UUID(second["id"]))
            .values(valid_until=sa.func.now() + sa.text("interval '2 days'"))
        )
    xlsx = await harness.client.get(
        "/v1/members/export", params={"format": "xlsx", "lang": "en"}, headers=exporter
    )
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    columns = list(values[0])
    holder_row = next(v for v in values[1:] if v[0] == holder["id"])
    assert holder_row[columns.index("Usable coupons")] == 2
    assert holder_row[columns.index("Usable coupon codes")] == (
        f"{second['code']},{issued[0]['code']}"
    )

    # Coupons are not imported: the file imports back without a change, nor a coupon issued.
    before = await snapshot(harness, merchant)
    async with harness.app.state.database.transaction() as session:
        coupons_before = await session.scalar(
            sa.select(sa.func.count()).select_from(Coupon).where(Coupon.merchant_id == merchant)
        )
    job = await finished(
        harness, merchant, (await upload(harness, merchant, xlsx.content, XLSX)).json()["id"]
    )
    assert job["counts"]["unchanged"] == 2, job
    assert await snapshot(harness, merchant) == before
    async with harness.app.state.database.transaction() as session:
        assert coupons_before == await session.scalar(
            sa.select(sa.func.count()).select_from(Coupon).where(Coupon.merchant_id == merchant)
        )
