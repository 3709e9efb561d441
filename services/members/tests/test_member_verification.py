"""Batch verification finds exactly the seeded problems (duplicate phones once normalised,
invalid phones, points balances off their ledger, impossible birthdays, coupons off their
redemption steps or over a per-member limit), can be limited to
the members of an import, takes one more registered check, and shows nothing of another
merchant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from members.coupons.models import Coupon
from members.models import Member
from members.stored_value.models import StoredValueAccount
from members.verification import service

from .conftest import Harness
from .test_coupons import issue, make_template, step
from .test_coupons import keyed as coupon_keyed
from .test_member_imports import SV_HEADER, csv_file, finished, row_results, sv_row, upload
from .test_stored_value import apply, debit, recharge

IMPORTER = frozenset({"members:import", "members:write"})


async def create(harness: Harness, merchant: uuid.UUID, phone: str, **fields: Any) -> uuid.UUID:
    response = await harness.create_member(merchant, phone, **fields)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def legacy(harness: Harness, merchant: uuid.UUID, phone: str) -> uuid.UUID:
    """A member another system wrote, phone as typed."""
    member_id = new_id()
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.insert(Member).values(
                id=member_id, merchant_id=merchant, phone=phone, tags=[], points_balance=0
            )
        )
    return member_id


async def report(harness: Harness, merchant: uuid.UUID, **params: Any) -> dict[str, Any]:
    response = await harness.client.get(
        "/v1/members/verification", params=params, headers=harness.token(merchant, IMPORTER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def found(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["member_id"], issue["code"]): issue for m in body["members"] for issue in m["issues"]
    }


async def test_each_check_finds_exactly_the_seeded_problems(harness: Harness) -> None:
    merchant = new_id()
    first = await create(harness, merchant, "+8613800138041")
    same_number = await legacy(harness, merchant, "138 0013 8041")
    no_number = await legacy(harness, merchant, "12345")
    off_ledger = await create(harness, merchant, "+8613800138042")
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.update(Member).where(Member.id == off_ledger).values(points_balance=77)
        )
    future = await create(harness, merchant, "+8613800138043", birthday="2999-01-01")
    ancient = await create(harness, merchant, "+8613800138044", birthday="1899-12-31")
    await create(harness, merchant, "+8613800138045", birthday="1900-01-01")
    # Opening points booked by an import match their ledger: no issue.
    job = await upload(harness, merchant, csv_file([["13800138046", "Imp", "", "", "", "30"]]))
    await finished(harness, merchant, job.json()["id"])

    body = await report(harness, merchant)
    assert body["checks"] == ["birthdays", "coupons", "phones", "points", "stored_value"]
    assert body["members_checked"] == 8
    assert body["members_with_issues"] == 6
    assert body["counts"] == {
        "birthday_before_1900": 1,
        "birthday_in_future": 1,
        "duplicate_phone": 2,
        "invalid_phone": 1,
        "points_ledger_mismatch": 1,
    }
    issues = found(body)
    assert set(issues) == {
        (str(first), "duplicate_phone"),
        (str(same_number), "duplicate_phone"),
        (str(no_number), "invalid_phone"),
        (str(off_ledger), "points_ledger_mismatch"),
        (str(future), "birthday_in_future"),
        (str(ancient), "birthday_before_1900"),
    }
    duplicate = issues[(str(first), "duplicate_phone")]
    assert duplicate["check"] == "phones"
    assert duplicate["data"] == {
        "normalized_phone": "+8613800138041",
        "other_member_ids": [str(same_number)],
    }
    assert duplicate["fix"]
    assert issues[(str(off_ledger), "points_ledger_mismatch")]["data"] == {
        "balance": 77,
        "ledger_total": 0,
        "difference": 77,
    }
    # Oldest member first; phones shown to a caller who may change members.
    assert [m["member_id"] for m in body["members"]][:2] == [str(first), str(same_number)]
    assert body["members"][0]["phone"] == "+8613800138041"
    masked = await harness.client.get(
        "/v1/members/verification",
        headers=harness.token(merchant, frozenset({"members:import"})),
    )
    assert masked.json()["members"][0]["phone"] == "+86138****8041"

    only_points = await report(harness, merchant, check="points")
    assert only_points["counts"] == {"points_ledger_mismatch": 1}


async def test_limited_to_the_members_of_an_import(harness: Harness) -> None:
    merchant = new_id()
    await legacy(harness, merchant, "138-0013-8051")
    await create(harness, merchant, "+8613800138052", birthday="2999-01-01")
    job = await upload(
        harness,
        merchant,
        csv_file(
            [["13800138051", "", "", "", "", ""], ["13800138053", "New", "1800-01-01", "", "", ""]]
        ),
    )
    job_id = job.json()["id"]
    await finished(harness, merchant, job_id)
    # The file's phone matched no stored phone exactly (the legacy one is not normalised):
    # the import registered it, and verification shows the duplicate it made.
    body = await report(harness, merchant, import_id=job_id)
    assert body["import_id"] == job_id
    assert body["members_checked"] == 1
    assert body["counts"] == {"duplicate_phone": 1}
    everyone = await report(harness, merchant)
    assert everyone["counts"] == {"birthday_in_future": 1, "duplicate_phone": 2}


async def test_one_more_registered_check_is_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    member = await create(harness, merchant, "+8613800138061")

    async def gift_cards(
        session: AsyncSession, merchant_id: uuid.UUID, only: service.Only
    ) -> list[service.Issue]:
        ids = await session.scalars(sa.select(Member.id).where(Member.merchant_id == merchant_id))
        return [service.Issue(i, "gift_card_ledger_mismatch", "off", "fix it", {}) for i in ids]

    monkeypatch.setitem(service.CHECKS, "gift_cards", gift_cards)
    body = await report(harness, merchant)
    assert "gift_cards" in body["checks"]
    assert body["counts"] == {"gift_card_ledger_mismatch": 1}
    assert body["members"][0]["member_id"] == str(member)
    with pytest.raises(ValueError, match="already registered"):
        service.check("points")(gift_cards)


async def test_other_merchants_and_bad_requests(harness: Harness) -> None:
    owner, intruder = new_id(), new_id()
    await create(harness, owner, "+8613800138071", birthday="2999-01-01")
    job = await upload(harness, owner, csv_file([["13800138072", "", "", "", "", ""]]))
    await finished(harness, owner, job.json()["id"])

    theirs = await report(harness, intruder)
    assert (theirs["members_checked"], theirs["members"]) == (0, [])
    hidden = await harness.client.get(
        "/v1/members/verification",
        params={"import_id": job.json()["id"]},
        headers=harness.token(intruder, IMPORTER),
    )
    assert hidden.status_code == 404
    unknown = await harness.client.get(
        "/v1/members/verification",
        params={"check": "nonsense"},
        headers=harness.token(owner, IMPORTER),
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_check"
    denied = await harness.client.get(
        "/v1/members/verification", headers=harness.token(owner, frozenset({"members:write"}))
    )
    assert denied.status_code == 403


async def set_coupon(harness: Harness, coupon: dict[str, Any], **values: Any) -> None:
    """Corrupt a coupon as a faulty migration or a hand edit would."""
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.update(Coupon).where(Coupon.id == uuid.UUID(coupon["id"])).values(**values)
        )


async def test_coupons_against_their_steps_and_limits(harness: Harness) -> None:
    merchant = new_id()
    member = await create(harness, merchant, "+8613800138081")
    template = await make_template(harness, merchant)

    async def new_coupon(template_id: str = template["id"], to: uuid.UUID = member) -> Any:
        response = await issue(harness, merchant, template_id, str(to))
        assert response.status_code == 201, response.text
        return response.json()

    used, released, reserved, never, voided, legacy_held, legacy_orderless = [
        await new_coupon() for _ in range(7)
    ]
    # Consistent: redeemed after reserved, issued again after a release, voided and then
    # reserved by a till that had not seen the void, never stepped.
    await step(harness, merchant, used, "reserved", 1)
    await step(harness, merchant, used, "redeemed", 2)
    await step(harness, merchant, released, "reserved", 1)
    await step(harness, merchant, released, "released", 2)
    await step(harness, merchant, reserved, "reserved", 1)
    assert (
        await harness.client.post(
            f"/v1/members/{member}/coupons/{voided['id']}/void",
            json={"reason": "wrong member"},
            headers=coupon_keyed(harness.token(merchant)),
        )
    ).status_code == 200
    await step(harness, merchant, voided, "reserved", 1)
    # Stepped before the last step was recorded: only its order can be judged.
    await set_coupon(harness, legacy_held, state="reserved", sequence=3, order_id=new_id())
    assert (await report(harness, merchant, check="coupons"))["members"] == []

    # Contradictions: redeemed although the last step released it, issued although still
    # reserved, redeemed without any step, held with no order.
    await set_coupon(harness, released, state="redeemed")
    await set_coupon(harness, reserved, state="issued")
    await set_coupon(harness, never, state="redeemed", order_id=new_id())
    await set_coupon(harness, legacy_orderless, state="reserved", sequence=2)

    # Over a per-member limit lowered after issue: three held, one voided, limit 1.
    limited = await make_template(harness, merchant, name="one each", per_member_limit=3)
    other = await create(harness, merchant, "+8613800138082")
    *_, third = [await new_coupon(limited["id"]) for _ in range(3)]
    await new_coupon(limited["id"], other)
    extra = await harness.client.post(
        f"/v1/members/{member}/coupons/{third['id']}/void",
        json={"reason": "extra"},
        headers=coupon_keyed(harness.token(merchant)),
    )
    assert extra.status_code == 200, extra.text
    lowered = await harness.client.patch(
        f"/v1/coupon-templates/{limited['id']}",
        json={"version": limited["version"], "per_member_limit": 1},
        headers=harness.token(merchant),
    )
    assert lowered.status_code == 200, lowered.text

    body = await report(harness, merchant, check="coupons")
    assert body["counts"] == {"coupon_state_mismatch": 4, "coupon_limit_exceeded": 1}
    assert [m["member_id"] for m in body["members"]] == [str(member)]
    issues = body["members"][0]["issues"]
    mismatched = {i["data"]["coupon_id"]: i for i in issues if i["code"] == "coupon_state_mismatch"}
    assert set(mismatched) == {released["id"], reserved["id"], never["id"], legacy_orderless["id"]}
    assert mismatched[released["id"]]["data"] == {
        "coupon_id": released["id"],
        "code": released["code"],
        "state": "redeemed",
        "last_step": "released",
        "sequence": 2,
        "order_id": str(uuid.UUID(int=2)),
    }
    assert mismatched[reserved["id"]]["data"]["last_step"] == "reserved"
    assert "expected reserved or voided" in mismatched[reserved["id"]]["detail"]
    assert mismatched[never["id"]]["data"]["last_step"] is None
    assert "never reserved" in mismatched[never["id"]]["detail"]
    assert "names no order" in mismatched[legacy_orderless["id"]]["detail"]
    assert all(i["check"] == "coupons" and i["fix"] for i in issues)
    [limit] = [i for i in issues if i["code"] == "coupon_limit_exceeded"]
    assert limit["data"] == {"template_id": limited["id"], "held": 2, "limit": 1, "excess": 1}

    # Another merchant sees none of it; the member of an import alone is reported on.
    assert (await report(harness, new_id(), check="coupons"))["members"] == []
    job = await upload(harness, merchant, csv_file([["13800138082", "Other", "", "", "", ""]]))
    await finished(harness, merchant, job.json()["id"])
    scoped = await report(harness, merchant, check="coupons", import_id=job.json()["id"])
    assert (scoped["members_checked"], scoped["members"]) == (1, [])


async def set_account(harness: Harness, member_id: uuid.UUID, **values: Any) -> None:
    """Move an account past its ledger, as a hand edit or a faulty migration would."""
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.update(StoredValueAccount)
            .where(StoredValueAccount.member_id == member_id)
            .values(**values)
        )


async def test_stored_value_against_its_ledger(harness: Harness) -> None:
    merchant = new_id()
    # Recharged and spent, and an imported opening balance: both match their ledgers.
    spender = await create(harness, merchant, "+8613800138091")
    await apply(harness, recharge(merchant, str(spender), 5000))
    await apply(harness, debit(merchant, str(spender), 1200))
    job = await upload(
        harness,
        merchant,
        csv_file(
            [
                sv_row("13800138092", "80.00", "5.00"),
                sv_row("13800138093", "10.00", "1.00"),
                sv_row("13800138094", "20.00"),
            ],
            SV_HEADER,
        ),
    )
    await finished(harness, merchant, job.json()["id"])
    rows = await row_results(harness, merchant, job.json()["id"])
    fine, off_principal, off_both = (uuid.UUID(rows[n]["member_id"]) for n in (2, 3, 4))
    assert (await report(harness, merchant, check="stored_value"))["members"] == []

    await set_account(harness, off_principal, principal=StoredValueAccount.principal + 300)
    await set_account(harness, off_both, principal=0, bonus=700)
    # Another merchant's broken account never shows here.
    other = new_id()
    theirs = await create(harness, other, "+8613800138091")
    await apply(harness, recharge(other, str(theirs), 100))
    await set_account(harness, theirs, principal=1)

    body = await report(harness, merchant)
    assert body["counts"] == {"stored_value_ledger_mismatch": 2}
    issues = found(body)
    assert set(issues) == {
        (str(off_principal), "stored_value_ledger_mismatch"),
        (str(off_both), "stored_value_ledger_mismatch"),
    }
    principal_only = issues[(str(off_principal), "stored_value_ledger_mismatch")]
    assert principal_only["check"] == "stored_value"
    assert principal_only["fix"]
    assert principal_only["data"] == {
        "currency": "CNY",
        "parts": ["principal"],
        "account": {"principal": 1300, "bonus": 100},
        "ledger_total": {"principal": 1000, "bonus": 100},
        "difference": {"principal": 300, "bonus": 0},
    }
    assert issues[(str(off_both), "stored_value_ledger_mismatch")]["data"]["difference"] == {
        "principal": -2000,
        "bonus": 700,
    }
    assert str(fine) not in {m["member_id"] for m in body["members"]}

    # Limited to another import's members, these are not reported.
    elsewhere = await upload(harness, merchant, csv_file([["13800138095", "", "", "", "", ""]]))
    await finished(harness, merchant, elsewhere.json()["id"])
    scoped = await report(harness, merchant, check="stored_value", import_id=elsewhere.json()["id"])
    assert scoped["members"] == []
    scoped = await report(harness, merchant, check="stored_value", import_id=job.json()["id"])
    assert scoped["counts"] == {"stored_value_ledger_mismatch": 2}

    theirs_report = await report(harness, other, check="stored_value")
    assert theirs_report["counts"] == {"stored_value_ledger_mismatch": 1}
    assert [m["member_id"] for m in theirs_report["members"]] == [str(theirs)]


async def test_a_negative_part_is_reported(harness: Harness) -> None:
    """The database refuses a negative part, so only data written around the constraint has
    one: the check is run in a transaction that lifts it, and rolled back."""
    merchant = new_id()
    member = await create(harness, merchant, "+8613800138096")
    await apply(harness, recharge(merchant, str(member), 500))
    database = harness.app.state.database
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            session = AsyncSession(bind=connection)
            await session.execute(
                sa.text(
                    "ALTER TABLE stored_value_accounts "
                    "DROP CONSTRAINT ck_stored_value_accounts_bonus"
                )
            )
            await session.execute(
                sa.update(StoredValueAccount)
                .where(StoredValueAccount.member_id == member)
                .values(bonus=-50)
            )
            result = await service.verify(session, merchant, checks=["stored_value"])
        finally:
            await transaction.rollback()
    [(name, negative), (_, mismatch)] = result.issues[member]
    assert name == "stored_value"
    assert (negative.code, negative.data) == (
        "stored_value_negative",
        {"currency": "CNY", "principal": 500, "bonus": -50},
    )
    assert (mismatch.code, mismatch.data["parts"]) == ("stored_value_ledger_mismatch", ["bonus"])
    assert (await report(harness, merchant, check="stored_value"))["members"] == []
