"""Member import jobs and the member export.

An upload becomes a job holding the file's rows; a background worker applies them a chunk per
transaction, and the job's ``processed_rows``, its counts and the chunk's row results move in
the same transaction as the chunk's members, so progress is exact and a crash resumes after
the last committed chunk: nothing is applied twice.

Rows are keyed by phone (normalised to E.164): an unknown phone creates a member
(``members.member.created`` as any registration), a known one is updated where the row's
non-blank cells differ (``updated``, with the fields changed) and is ``unchanged`` otherwise.
A blank cell leaves the field as it is; a non-blank ``tags`` cell is the member's whole set of
tags. ``opening_points`` is the balance carried over from another system, booked once per
member as an ``import`` entry of the points ledger: the same figure again is no change,
another figure is rejected (``opening_points_already_imported``). The opening stored value
(``opening_stored_value_principal`` and ``opening_stored_value_bonus``, in major units of
``stored_value_currency``, CNY when blank; a blank part is zero once the other is given) is
booked the same way: once per member as an ``import`` entry of the stored-value ledger,
crediting the account in the row's transaction; the same figures again are no change, others
are rejected (``opening_stored_value_already_imported``). So importing the same file twice
changes nothing, and the same file uploaded again is the same job (keyed by the file's
SHA-256).

A rejected row (bad phone, birthday, points, amount, a phone already on an earlier row of the
file) is reported with a stable code and never stops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import phones
from contracts.ids import new_id
from contracts.money import Money, minor_unit_exponent
from members.coupons.models import Coupon
from members.imports.reader import read_rows
from members.member.schemas import MemberCreate, MemberUpdate
from members.member.service import create_member, update_member
from members.models import Member, MemberImport, MemberImportRow, PointsEntry
from members.stored_value import service as stored_value
from members.stored_value.models import StoredValueAccount
from servicekit.auth import Principal, scoped_to_merchant
from servicekit.db import Database
from servicekit.errors import NotFound, Problem, field_errors
from servicekit.tabular import Column, Sheet

log = logging.getLogger(__name__)

EARLIEST_BIRTHDAY: Final = date(1900, 1, 1)
MAX_OPENING_POINTS: Final = 10**12
#: Minor units; far above any real balance, and the sum of both parts stays a bigint.
MAX_OPENING_STORED_VALUE: Final = 10**15
DEFAULT_CURRENCY: Final = "CNY"
#: ASCII and full-width commas and semicolons, the ideographic comma, a bar.
_TAG_SEPARATORS: Final = re.compile("[,\uff0c;\uff1b\u3001|]")
_DATE_FORMATS: Final = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")
#: Set on a row at upload when its phone is on an earlier row: the row number of that one.
DUPLICATE_OF: Final = "_duplicate_of"


class Rejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class RowResult:
    row: int
    status: str
    phone: str | None = None
    member_id: uuid.UUID | None = None
    code: str | None = None
    detail: str | None = None
    changed: list[str] = field(default_factory=list)


# --- reading a row -------------------------------------------------------------------------


def parse_birthday(text: str, today: date) -> date:
    for pattern in _DATE_FORMATS:
        try:
            day = datetime.strptime(text, pattern).date()
        except ValueError:
            continue
        if day > today:
            raise Rejected("invalid_birthday", "birthday is in the future.")
        if day < EARLIEST_BIRTHDAY:
            raise Rejected("invalid_birthday", "birthday is before 1900.")
        return day
    raise Rejected("invalid_birthday", "birthday must be a date such as 1990-05-01.")


def parse_tags(text: str) -> list[str]:
    tags: list[str] = []
    for part in _TAG_SEPARATORS.split(text):
        tag = part.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def parse_points(text: str) -> int:
    try:
        points = int(text)
    except ValueError:
        raise Rejected("invalid_points", "opening_points must be a whole number.") from None
    if points < 0 or points > MAX_OPENING_POINTS:
        raise Rejected("invalid_points", "opening_points must be 0 or more.")
    return points


def parse_stored_value(row: dict[str, str]) -> tuple[Money, Money] | None:
    """The opening stored value (principal, bonus) of the row; ``None`` when both cells are
    blank."""
    principal_text = row.get("opening_stored_value_principal", "")
    bonus_text = row.get("opening_stored_value_bonus", "")
    if not principal_text and not bonus_text:
        return None
    currency = (row.get("stored_value_currency") or DEFAULT_CURRENCY).upper()
    try:
        minor_unit_exponent(currency)
    except ValueError:
        raise Rejected("invalid_currency", f"{currency!r} is not a supported currency.") from None

    def amount(column: str, text: str) -> Money:
        if not text:
            return Money.zero(currency)
        try:
            money = Money.parse(text, currency)
        except ValueError:
            raise Rejected(
                "invalid_amount",
                f"{column} must be an amount of {currency} such as 100.00, "
                "with no more decimals than the currency has.",
            ) from None
        if money.is_negative or money.amount > MAX_OPENING_STORED_VALUE:
            raise Rejected("invalid_amount", f"{column} must be 0 or more.")
        return money

    return (
        amount("opening_stored_value_principal", principal_text),
        amount("opening_stored_value_bonus", bonus_text),
    )


def row_phone(row: dict[str, str]) -> str:
    text = row.get("phone", "")
    if not text:
        raise Rejected("missing_phone", "phone is required.")
    try:
        return phones.normalize_phone(text)
    except ValueError as exc:
        raise Rejected("invalid_phone", str(exc)) from None


@dataclass(frozen=True, slots=True)
class Parsed:
    phone: str
    #: The member fields of the row's non-blank cells.
    fields: dict[str, Any]
    opening_points: int | None
    #: Principal and bonus.
    opening_stored_value: tuple[Money, Money] | None = None


def parse_row(row: dict[str, str], today: date) -> Parsed:
    """The row as member fields; :class:`Rejected` with what is wrong otherwise."""
    phone = row_phone(row)
    fields: dict[str, Any] = {}
    if row.get("name"):
        fields["name"] = row["name"]
    if row.get("level"):
        fields["level"] = row["level"]
    if row.get("birthday"):
        fields["birthday"] = parse_birthday(row["birthday"], today)
    if row.get("tags"):
        fields["tags"] = parse_tags(row["tags"])
    points = parse_points(row["opening_points"]) if row.get("opening_points") else None
    opening_stored_value = parse_stored_value(row)
    try:
        # The same checks as a registration at the till (lengths, storable text).
        checked = MemberCreate.model_validate({"phone": phone, **fields})
    except ValidationError as exc:
        error = field_errors(exc.errors())[0]
        raise Rejected(error.code, f"{error.field}: {error.message}") from None
    return Parsed(phone, checked.model_dump(include=set(fields)), points, opening_stored_value)


def mark_duplicates(rows: list[dict[str, str]]) -> None:
    """Mark each row whose phone an earlier row of the file has: applying both would leave
    the member as the later row says, and importing the file again would flip it back and
    forth, so the later one is rejected."""
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        try:
            phone = row_phone(row)
        except Rejected:
            continue
        number = index + 2  # as a spreadsheet numbers rows: the header is row 1
        if phone in first:
            row[DUPLICATE_OF] = str(first[phone])
        else:
            first[phone] = number


# --- applying a row ------------------------------------------------------------------------


async def _book_opening_points(
    session: AsyncSession, member: Member, points: int, import_id: uuid.UUID
) -> bool:
    """Book ``points`` as the member's opening balance; ``False`` when that balance is
    already booked. The member row is locked by the caller."""
    booked = await session.scalar(
        scoped_to_merchant(sa.select(PointsEntry), PointsEntry, member.merchant_id).where(
            PointsEntry.member_id == member.id, PointsEntry.kind == "import"
        )
    )
    if booked is not None:
        if booked.points != points:
            raise Rejected(
                "opening_points_already_imported",
                f"this member's opening balance was imported as {booked.points} points.",
            )
        return False
    if points == 0:
        return False
    balance = member.points_balance + points
    await session.execute(
        pg_insert(PointsEntry).values(
            merchant_id=member.merchant_id,
            member_id=member.id,
            order_id=None,
            kind="import",
            source_id=import_id,
            points=points,
            balance_after=balance,
            base_amount=0,
            currency=None,
            event_id=None,
        )
    )
    member.points_balance = balance
    await session.flush()
    return True


async def _book_opening_stored_value(
    session: AsyncSession, member: Member, opening: tuple[Money, Money], import_id: uuid.UUID
) -> bool:
    """Credit the member's opening stored value; ``False`` when it is booked already. The
    member row is locked by the caller."""
    principal, bonus = opening
    try:
        return await stored_value.book_opening(
            session, member, principal=principal, bonus=bonus, import_id=import_id
        )
    except stored_value.OpeningConflict as conflict:
        booked = conflict.booked
        raise Rejected(
            stored_value.OPENING_ALREADY_IMPORTED,
            "this member's opening stored value was imported as principal "
            f"{Money.of(booked.principal, booked.currency)}, "
            f"bonus {Money.of(booked.bonus, booked.currency)}.",
        ) from None


def _differs(member: Member, fields: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for name, value in fields.items():
        current = getattr(member, name)
        if name == "tags":
            current = list(current or [])
        if current != value:
            changed[name] = value
    return changed


async def apply_row(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    import_id: uuid.UUID,
    number: int,
    row: dict[str, str],
    today: date,
) -> RowResult:
    result = RowResult(row=number, status="rejected", phone=row.get("phone") or None)
    try:
        if DUPLICATE_OF in row:
            raise Rejected(
                "duplicate_phone_in_file", f"row {row[DUPLICATE_OF]} has the same phone."
            )
        parsed = parse_row(row, today)
        result.phone = parsed.phone
        async with session.begin_nested():
            member = await session.scalar(
                scoped_to_merchant(sa.select(Member), Member, merchant_id)
                .where(Member.phone == parsed.phone)
                .with_for_update()
            )
            if member is None:
                member = await create_member(
                    session,
                    merchant_id,
                    MemberCreate.model_validate({"phone": parsed.phone, **parsed.fields}),
                )
                if parsed.opening_points is not None:
                    await _book_opening_points(session, member, parsed.opening_points, import_id)
                if parsed.opening_stored_value is not None:
                    await _book_opening_stored_value(
                        session, member, parsed.opening_stored_value, import_id
                    )
                result.status, result.member_id = "created", member.id
                return result
            result.member_id = member.id
            changed = sorted(_differs(member, parsed.fields))
            booked = False
            if parsed.opening_points is not None:
                booked = await _book_opening_points(
                    session, member, parsed.opening_points, import_id
                )
            credited = False
            if parsed.opening_stored_value is not None:
                credited = await _book_opening_stored_value(
                    session, member, parsed.opening_stored_value, import_id
                )
            if changed:
                update = {"version": member.version, **{n: parsed.fields[n] for n in changed}}
                await update_member(
                    session, merchant_id, member.id, MemberUpdate.model_validate(update)
                )
            if booked:
                changed.append("opening_points")
            if credited:
                changed.append("opening_stored_value")
            result.status = "updated" if changed else "unchanged"
            result.changed = changed
            return result
    except Rejected as rejected:
        result.code, result.detail = rejected.code, rejected.detail
    except Problem as problem:
        result.code, result.detail = problem.code, problem.detail
    except Exception:
        # The savepoint went with the row: a row the database refuses must not stop the
        # rest of the file, nor keep the worker retrying the same chunk for ever.
        log.exception("member import %s row %d failed", import_id, number)
        result.code, result.detail = "row_failed", "The row could not be stored."
    result.status, result.changed = "rejected", []
    return result


# --- jobs ----------------------------------------------------------------------------------


async def start(
    session: AsyncSession, principal: Principal, content: bytes, content_type: str
) -> tuple[MemberImport, bool]:
    """The job of this file, and whether it is new: the same file again is the same job."""
    digest = hashlib.sha256(content).hexdigest()
    existing = await _job_of_file(session, principal.merchant_id, digest)
    if existing is not None:
        return existing, False
    rows = read_rows(content, content_type)
    mark_duplicates(rows)
    job_id = new_id()
    inserted = await session.scalar(
        pg_insert(MemberImport)
        .values(
            id=job_id,
            merchant_id=principal.merchant_id,
            file_sha256=digest,
            status="running",
            rows=rows,
            total_rows=len(rows),
            processed_rows=0,
            counts={},
            created_by=principal.subject,
        )
        .on_conflict_do_nothing(constraint="uq_member_imports_file")
        .returning(MemberImport.id)
    )
    job = await _job_of_file(session, principal.merchant_id, digest)
    assert job is not None
    return job, inserted is not None


async def _job_of_file(
    session: AsyncSession, merchant_id: uuid.UUID, digest: str
) -> MemberImport | None:
    job: MemberImport | None = await session.scalar(
        scoped_to_merchant(sa.select(MemberImport), MemberImport, merchant_id).where(
            MemberImport.file_sha256 == digest
        )
    )
    return job


async def get_job(
    session: AsyncSession, merchant_id: uuid.UUID, import_id: uuid.UUID
) -> MemberImport:
    job: MemberImport | None = await session.scalar(
        scoped_to_merchant(sa.select(MemberImport), MemberImport, merchant_id).where(
            MemberImport.id == import_id
        )
    )
    if job is None:
        raise NotFound("Member import not found.", code="import_not_found")
    return job


async def process_chunk(
    session: AsyncSession, chunk: int, *, import_id: uuid.UUID | None = None
) -> bool:
    """Apply the next ``chunk`` rows of the oldest running import no other worker holds (or
    of ``import_id``); ``False`` when there is nothing to do."""
    stmt = sa.select(MemberImport).where(MemberImport.status == "running")
    if import_id is not None:
        stmt = stmt.where(MemberImport.id == import_id)
    job = await session.scalar(
        stmt.order_by(MemberImport.created_at).limit(1).with_for_update(skip_locked=True)
    )
    if job is None:
        return False
    today = datetime.now(UTC).date()
    start_at = job.processed_rows
    rows = job.rows[start_at : start_at + chunk]
    counts = dict(job.counts)
    results = []
    for offset, row in enumerate(rows):
        result = await apply_row(
            session, job.merchant_id, job.id, start_at + offset + 2, row, today
        )
        counts[result.status] = counts.get(result.status, 0) + 1
        results.append(result)
    if results:
        await session.execute(
            pg_insert(MemberImportRow)
            .values(
                [
                    {
                        "import_id": job.id,
                        "row": r.row,
                        "merchant_id": job.merchant_id,
                        "status": r.status,
                        "phone": r.phone,
                        "member_id": r.member_id,
                        "code": r.code,
                        "detail": r.detail,
                        "changed": r.changed,
                    }
                    for r in results
                ]
            )
            .on_conflict_do_nothing()
        )
    job.counts = counts
    job.processed_rows = start_at + len(rows)
    if job.processed_rows >= job.total_rows:
        job.status = "completed"
        job.finished_at = datetime.now(UTC)
    await session.flush()
    return True


async def run_worker(
    database: Database, interval: float, chunk: int, wake: asyncio.Event | None = None
) -> None:
    """Apply every pending chunk, then wait ``interval`` or until ``wake`` is set (an import
    accepted by this replica), whichever comes first: a replica that took the upload starts
    at once, another one finds the job at its next look, and an idle service stays quiet."""
    wake = wake or asyncio.Event()
    while True:
        try:
            while True:
                async with database.transaction() as session:
                    busy = await process_chunk(session, chunk)
                if not busy:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("applying member imports failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()


def wake_worker(runtime: Any) -> None:
    """Start on a just-committed import now rather than at the worker's next look."""
    wake = runtime.extras.get("member_import_wake")
    if wake is not None:
        wake.set()


async def start_worker(runtime: Any) -> None:
    settings = runtime.settings
    wake = runtime.extras["member_import_wake"] = asyncio.Event()
    runtime.extras["member_import_worker"] = asyncio.create_task(
        run_worker(
            runtime.database, settings.import_poll_interval, settings.import_chunk_rows, wake
        ),
        name="members-imports",
    )


async def stop_worker(runtime: Any) -> None:
    task = runtime.extras.pop("member_import_worker", None)
    runtime.extras.pop("member_import_wake", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- export --------------------------------------------------------------------------------

BATCH: Final = 1000

EXPORT_COLUMNS: Final = [
    Column("member_id", "会员ID", "Member ID"),
    Column("phone", "手机号", "Phone"),
    Column("name", "姓名", "Name"),
    Column("birthday", "生日", "Birthday"),
    Column("level", "会员等级", "Level"),
    Column("tags", "标签", "Tags"),
    Column("points_balance", "积分余额", "Points balance"),
    # What the account holds now, not import columns: an opening balance is imported once.
    Column("stored_value_principal", "储值本金", "Stored value principal"),
    Column("stored_value_bonus", "储值赠送", "Stored value bonus"),
    Column("stored_value_balance", "储值余额", "Stored value balance"),
    Column("stored_value_currency", "储值币种", "Stored value currency"),
    Column("usable_coupons", "可用优惠券数", "Usable coupons"),
    Column("usable_coupon_codes", "可用优惠券码", "Usable coupon codes"),
    Column("created_at", "注册时间", "Registered at"),
]


def _usable_coupons(merchant_id: uuid.UUID) -> sa.Subquery:
    """Per member, the coupons they can still present at a till: issued (not held by an open
    order, redeemed or voided) and not expired at the export's time, soonest to expire first.
    Coupons are not imported back (they come from templates): these columns are for reading."""
    return (
        scoped_to_merchant(
            sa.select(
                Coupon.member_id,
                sa.func.count().label("count"),
                sa.func.string_agg(
                    Coupon.code,
                    aggregate_order_by(sa.literal_column("','"), Coupon.valid_until, Coupon.code),
                ).label("codes"),
            ),
            Coupon,
            merchant_id,
        )
        .where(Coupon.state == "issued", Coupon.valid_until > sa.func.now())
        .group_by(Coupon.member_id)
        .subquery("usable")
    )


async def _member_rows(database: Database, merchant_id: uuid.UUID) -> AsyncIterator[Sequence[Any]]:
    usable = _usable_coupons(merchant_id)
    stmt = (
        scoped_to_merchant(
            sa.select(Member, StoredValueAccount, usable.c.count, usable.c.codes),
            Member,
            merchant_id,
        )
        .outerjoin(
            StoredValueAccount,
            sa.and_(
                StoredValueAccount.member_id == Member.id,
                StoredValueAccount.merchant_id == merchant_id,
            ),
        )
        .outerjoin(usable, usable.c.member_id == Member.id)
        .order_by(Member.created_at, Member.id)
        .execution_options(yield_per=BATCH)
    )
    # The response outlives the request's transaction: the rows stream from one of their own.
    async with database.transaction() as session:
        result = await session.stream(stmt)
        async for member, account, count, codes in result:
            # A member who never held stored value has no account, hence no currency: blank.
            held: list[Any] = [None, None, None, None]
            if account is not None:
                held = [
                    Money.of(account.principal, account.currency),
                    Money.of(account.bonus, account.currency),
                    Money.of(account.principal + account.bonus, account.currency),
                    account.currency,
                ]
            yield [
                member.id,
                member.phone,
                member.name,
                member.birthday,
                member.level,
                ",".join(member.tags or []),
                member.points_balance,
                *held,
                count or 0,
                codes or "",
                member.created_at,
            ]


def member_sheets(database: Database, merchant_id: uuid.UUID) -> list[Sheet]:
    return [Sheet("会员", "Members", EXPORT_COLUMNS, _member_rows(database, merchant_id))]
