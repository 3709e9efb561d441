"""Member import and export: per-row results, a rejected row never stops the rest, the same
file twice changes nothing, a job resumes after a crash without applying a row twice, the
export's headers in Chinese and English, and other tenants see nothing."""

from __future__ import annotations

import asyncio
import contextlib
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
from members.stored_value.models import StoredValueAccount, StoredValueEntry

from .conftest import Harness, eventually
from .test_coupons import issue, make_template
from .test_coupons import keyed as coupon_keyed
from .test_stored_value import apply, recharge

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
        accounts = (
            await session.execute(
                sa.select(
                    StoredValueAccount.member_id,
                    StoredValueAccount.currency,
                    StoredValueAccount.principal,
                    StoredValueAccount.bonus,
                ).where(StoredValueAccount.merchant_id == merchant)
            )
        ).all()
        ledger = (
            await session.execute(
                sa.select(
                    StoredValueEntry.member_id,
                    StoredValueEntry.kind,
                    StoredValueEntry.principal,
                    StoredValueEntry.bonus,
                ).where(StoredValueEntry.merchant_id == merchant)
            )
        ).all()
        events = await session.scalar(
            sa.text("SELECT count(*) FROM outbox WHERE payload->>'merchant_id' = :merchant"),
            {"merchant": str(merchant)},
        )
    return {
        "members": sorted(map(tuple, members)),
        "entries": sorted(map(tuple, entries)),
        "accounts": sorted(map(tuple, accounts)),
        "stored_value_ledger": sorted(map(tuple, ledger)),
        "events": events,
    }


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
        "储值本金",
        "储值赠送",
        "储值余额",
        "储值币种",
        "可用优惠券数",
        "可用优惠券码",
        "注册时间",
    ]
    assert [line[1:13] for line in lines[1:]] == [
        # Text a spreadsheet would run as a formula keeps an apostrophe in front.
        ["'+8613800138031", "'=cmd", "", "", "vip,tea", "0", "", "", "", "", "0", ""],
        ["'+8613800138032", "", "1991-01-02", "gold", "", "0", "", "", "", "", "0", ""],
    ]

    en = await harness.client.get(
        "/v1/members/export", headers={**exporter, "Accept-Language": "en-US,en;q=0.9"}
    )
    assert en.headers["content-language"] == "en"
    assert en.content.decode("utf-8-sig").splitlines()[0] == (
        "Member ID,Phone,Name,Birthday,Level,Tags,Points balance,Stored value principal,"
        "Stored value bonus,Stored value balance,Stored value currency,Usable coupons,"
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


SV_HEADER = [*HEADER, "期初储值本金", "期初储值赠送", "储值币种"]


def sv_row(phone: str, principal: str, bonus: str = "", currency: str = "") -> list[str]:
    return [phone, "", "", "", "", "", principal, bonus, currency]


async def adjusted_events(harness: Harness, merchant: uuid.UUID) -> list[dict[str, Any]]:
    async with harness.app.state.database.transaction() as session:
        rows = await session.scalars(
            sa.text(
                "SELECT payload FROM outbox WHERE payload->>'type' = "
                "'members.stored_value.adjusted' AND payload->>'merchant_id' = :merchant "
                "ORDER BY seq"
            ),
            {"merchant": str(merchant)},
        )
        return [dict(row) for row in rows]


async def sv_account(harness: Harness, merchant: uuid.UUID, member_id: str) -> dict[str, Any]:
    response = await harness.client.get(
        f"/v1/members/{member_id}/stored-value", headers=harness.token(merchant)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_opening_stored_value_is_credited_once(harness: Harness) -> None:
    merchant = new_id()
    recharged = (await harness.create_member(merchant, "+8613800138102")).json()
    in_cny = (await harness.create_member(merchant, "+8613800138108")).json()
    for member in (recharged, in_cny):
        await apply(harness, recharge(merchant, member["id"], 5000))
    rows = [
        sv_row("13800138101", "100.50", "20"),
        sv_row("13800138102", "30", ""),
        sv_row("13800138103", "-1"),
        sv_row("13800138104", "1.234"),
        sv_row("13800138105", "abc"),
        sv_row("13800138106", "", "0"),
        sv_row("13800138107", "5", "", "XYZ"),
        sv_row("13800138108", "10", "", "USD"),
        sv_row("13800138109", "", "8.8", "usd"),
    ]
    content = csv_file(rows, SV_HEADER)
    job = await finished(harness, merchant, (await upload(harness, merchant, content)).json()["id"])
    results = await row_results(harness, merchant, job["id"])
    assert {n: (r["status"], r["code"]) for n, r in results.items()} == {
        2: ("created", None),
        3: ("updated", None),
        4: ("rejected", "invalid_amount"),
        5: ("rejected", "invalid_amount"),
        6: ("rejected", "invalid_amount"),
        7: ("created", None),
        8: ("rejected", "invalid_currency"),
        9: ("rejected", "currency_mismatch"),
        10: ("created", None),
    }
    assert results[3]["changed"] == ["opening_stored_value"]
    # A rejected row leaves no member behind either.
    assert len((await snapshot(harness, merchant))["members"]) == 5

    created = await sv_account(harness, merchant, results[2]["member_id"])
    assert created["account"] == {
        "principal": {"amount": 10050, "currency": "CNY"},
        "bonus": {"amount": 2000, "currency": "CNY"},
        "balance": {"amount": 12050, "currency": "CNY"},
    }
    [entry] = created["items"]
    assert (entry["kind"], entry["principal"]["amount"], entry["bonus"]["amount"]) == (
        "import",
        10050,
        2000,
    )
    assert job["id"] in entry["note"]
    topped_up = await sv_account(harness, merchant, recharged["id"])
    assert topped_up["account"]["principal"] == {"amount": 8000, "currency": "CNY"}
    assert [e["kind"] for e in topped_up["items"]] == ["import", "recharge"]
    # Zero in both parts books nothing; another currency opens the account in it.
    assert (await sv_account(harness, merchant, results[7]["member_id"]))["account"] is None
    dollars = await sv_account(harness, merchant, results[10]["member_id"])
    assert dollars["account"]["bonus"] == {"amount": 880, "currency": "USD"}
    assert (await sv_account(harness, merchant, in_cny["id"]))["account"]["principal"][
        "amount"
    ] == 5000

    events = await adjusted_events(harness, merchant)
    assert sorted(
        (
            e["payload"]["member_id"],
            e["payload"]["principal"]["amount"],
            e["payload"]["bonus"]["amount"],
        )
        for e in events
    ) == sorted(
        [
            (results[2]["member_id"], 10050, 2000),
            (recharged["id"], 3000, 0),
            (results[10]["member_id"], 0, 880),
        ]
    )
    by_member = {e["payload"]["member_id"]: e["payload"] for e in events}
    assert by_member[recharged["id"]]["balance"] == {"amount": 8000, "currency": "CNY"}
    assert by_member[results[2]["member_id"]]["adjustment_id"] == entry["id"]

    before = await snapshot(harness, merchant)
    # The same rows in another file change nothing: no second credit, no second event.
    second = await finished(
        harness,
        merchant,
        (await upload(harness, merchant, xlsx_file(rows, SV_HEADER), XLSX)).json()["id"],
    )
    assert second["counts"] == {"created": 0, "updated": 0, "unchanged": 4, "rejected": 5}
    assert await snapshot(harness, merchant) == before

    # Other figures for a member whose opening balance is booked: the row is refused whole.
    for principal, bonus, currency in (("100.50", "", ""), ("100.5", "20", "USD"), ("1", "", "")):
        changed = await upload(
            harness,
            merchant,
            csv_file(
                [["13800138101", "Renamed", "", "", "", "", principal, bonus, currency]],
                SV_HEADER,
            ),
        )
        third = await finished(harness, merchant, changed.json()["id"])
        [result] = (await row_results(harness, merchant, third["id"])).values()
        assert (result["status"], result["code"]) == (
            "rejected",
            "opening_stored_value_already_imported",
        ), result
        assert "100.50" in result["detail"]
    assert await snapshot(harness, merchant) == before

    # Another merchant importing the same phone gets its own member and account.
    other = new_id()
    theirs = await finished(
        harness,
        other,
        (await upload(harness, other, csv_file([sv_row("13800138101", "1")], SV_HEADER))).json()[
            "id"
        ],
    )
    [their_row] = (await row_results(harness, other, theirs["id"])).values()
    assert their_row["status"] == "created"
    assert their_row["member_id"] != results[2]["member_id"]
    assert (await sv_account(harness, other, their_row["member_id"]))["account"]["principal"][
        "amount"
    ] == 100
    assert await snapshot(harness, merchant) == before


async def test_opening_stored_value_resumes_after_a_crash_without_double_credit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = harness.app.state.runtime
    database = harness.app.state.database
    await service.stop_worker(runtime)
    try:
        merchant = new_id()
        rows = [sv_row(f"1380013{9200 + i:04d}", f"{10 + i}.00", "1") for i in range(5)]
        job_id = uuid.UUID(
            (await upload(harness, merchant, csv_file(rows, SV_HEADER))).json()["id"]
        )

        async with database.transaction() as session:
            assert await service.process_chunk(session, 2, import_id=job_id)

        real_apply = service.apply_row
        calls = 0

        async def crashing(*args: Any, **kwargs: Any) -> service.RowResult:
            # The crash comes after the chunk's first row created its member and credited it.
            nonlocal calls
            calls += 1
            if calls == 2:
                raise Crash
            return await real_apply(*args, **kwargs)

        monkeypatch.setattr(service, "apply_row", crashing)
        with pytest.raises(Crash):
            async with database.transaction() as session:
                await service.process_chunk(session, 2, import_id=job_id)
        monkeypatch.setattr(service, "apply_row", real_apply)
        state = await snapshot(harness, merchant)
        assert len(state["accounts"]) == len(state["stored_value_ledger"]) == 2
    finally:
        await service.start_worker(runtime)

    job = await finished(harness, merchant, str(job_id))
    assert job["counts"] == {"created": 5, "updated": 0, "unchanged": 0, "rejected": 0}
    state = await snapshot(harness, merchant)
    assert sorted((p, b) for _, _, p, b in state["accounts"]) == [
        (1000 + 100 * i, 100) for i in range(5)
    ]
    assert sorted((k, p, b) for _, k, p, b in state["stored_value_ledger"]) == [
        ("import", 1000 + 100 * i, 100) for i in range(5)
    ]
    # One credit event per member: the crashed chunk's went with its transaction.
    assert len(await adjusted_events(harness, merchant)) == 5


async def test_export_shows_stored_value_and_imports_back(harness: Harness) -> None:
    merchant = new_id()
    job = await finished(
        harness,
        merchant,
        (
            await upload(
                harness,
                merchant,
                csv_file([sv_row("13800138111", "150.50", "12.30")], SV_HEADER),
            )
        ).json()["id"],
    )
    [imported] = (await row_results(harness, merchant, job["id"])).values()
    await apply(harness, recharge(merchant, imported["member_id"], 1000))
    plain = (await harness.create_member(merchant, "+8613800138112")).json()
    # Another merchant's account never shows.
    other = new_id()
    stranger = (await harness.create_member(other, "+8613800138113")).json()
    await apply(harness, recharge(other, stranger["id"], 999))
    exporter = harness.token(merchant, frozenset({"members:export"}))

    zh = await harness.client.get("/v1/members/export", headers=exporter)
    rows = list(csv.DictReader(io.StringIO(zh.content.decode("utf-8-sig"))))
    by_id = {row["会员ID"]: row for row in rows}
    assert set(by_id) == {imported["member_id"], plain["id"]}
    columns = ("储值本金", "储值赠送", "储值余额", "储值币种")
    assert [by_id[imported["member_id"]][c] for c in columns] == [
        "160.50",
        "12.30",
        "172.80",
        "CNY",
    ]
    assert [by_id[plain["id"]][c] for c in columns] == ["", "", "", ""]

    xlsx = await harness.client.get(
        "/v1/members/export", params={"format": "xlsx", "lang": "en"}, headers=exporter
    )
    values = list(
        load_workbook(io.BytesIO(xlsx.content), read_only=True)
        .worksheets[0]
        .iter_rows(values_only=True)
    )
    header = list(values[0])
    row = next(v for v in values[1:] if v[0] == imported["member_id"])
    assert [
        row[header.index(c)]
        for c in (
            "Stored value principal",
            "Stored value bonus",
            "Stored value balance",
            "Stored value currency",
        )
    ] == [160.5, 12.3, 172.8, "CNY"]

    before = await snapshot(harness, merchant)
    for content, kind in ((zh.content, "text/csv"), (xlsx.content, XLSX)):
        again = await finished(
            harness, merchant, (await upload(harness, merchant, content, kind)).json()["id"]
        )
        assert again["counts"]["unchanged"] == 2, again
    assert await snapshot(harness, merchant) == before


async def test_an_accepted_import_starts_without_waiting_for_the_next_look(
    harness: Harness,
) -> None:
    runtime = harness.app.state.runtime
    await service.stop_worker(runtime)
    wake = runtime.extras["member_import_wake"] = asyncio.Event()
    # A look once an hour: only the wake-up of the upload can start this job in time.
    worker = asyncio.create_task(
        service.run_worker(runtime.database, 3600, runtime.settings.import_chunk_rows, wake)
    )
    try:
        merchant = new_id()
        accepted = await upload(harness, merchant, csv_file([["13800138091", "Prompt"]]))
        assert accepted.status_code == 202, accepted.text
        job = await finished(harness, merchant, accepted.json()["id"])
        assert job["counts"]["created"] == 1
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await service.start_worker(runtime)
