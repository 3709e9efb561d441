"""The demo merchant of the local stack, created once at start-up when
``IDENTITY_SEED_DEMO=true``: an HQ admin, a store manager and a cashier in one store.

The credentials are fixed and printed at every start so the README can list them; never
enable this anywhere but on a developer's machine.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from identity.common.permissions import ALL_SCOPES
from identity.context import Identity
from identity.merchants.models import Merchant
from identity.merchants.schemas import MerchantIn
from identity.merchants.service import found_merchant
from identity.staff.schemas import StaffCreate
from identity.staff.service import add_staff
from identity.stores.schemas import BusinessHours, StoreCreate
from servicekit.app import Runtime
from servicekit.auth import Role

log = logging.getLogger(__name__)

DEMO_MERCHANT_CODE = "DEMO"
DEMO_STORE_CODE = "S001"
DEMO_PASSWORD = "countertop123"
DEMO_ACCOUNTS = (
    ("+8613800000001", "Demo HQ Admin", Role.HQ_ADMIN),
    ("+8613800000002", "Demo Store Manager", Role.STORE_MANAGER),
    ("+8613800000003", "Demo Cashier", Role.CASHIER),
)
_SEED_LOCK = 0x1D_0003


async def seed_demo(identity: Identity, runtime: Runtime) -> None:
    async with runtime.database.transaction() as session:
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(_SEED_LOCK)))
        exists = await session.scalar(
            sa.select(Merchant.id).where(Merchant.code == DEMO_MERCHANT_CODE)
        )
        if exists is None:
            password_hash = await identity.passwords.hash(DEMO_PASSWORD)
            hq_phone, hq_name, _ = DEMO_ACCOUNTS[0]
            merchant, store, _admin = await found_merchant(
                session,
                MerchantIn(
                    name="Countertop Demo Cafe",
                    credit_code="91310000MA1FL0000N",
                    legal_rep_name="Demo Owner",
                    legal_rep_id_number="110101199001011237",
                    industry="cafe",
                ),
                StoreCreate(
                    code=DEMO_STORE_CODE,
                    name="Demo Cafe People's Square",
                    address="1 Demo Road, Shanghai",
                    timezone="Asia/Shanghai",
                    business_hours=[
                        BusinessHours(day=day, opens="08:00", closes="22:00")
                        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                    ],
                ),
                StaffCreate(
                    phone=hq_phone,
                    name=hq_name,
                    password=DEMO_PASSWORD,
                    role=Role.HQ_ADMIN,
                    scopes=sorted(ALL_SCOPES),
                ),
                password_hash,
                code=DEMO_MERCHANT_CODE,
            )
            for phone, name, role in DEMO_ACCOUNTS[1:]:
                await add_staff(
                    session,
                    merchant.id,
                    StaffCreate(
                        phone=phone, name=name, password=DEMO_PASSWORD, role=role, store_id=store.id
                    ),
                    password_hash,
                    None,
                )
            log.info("seeded the demo merchant %s", DEMO_MERCHANT_CODE)
    lines = [f"demo merchant code {DEMO_MERCHANT_CODE}, store code {DEMO_STORE_CODE}:"]
    lines += [
        f"  {role.value:<14} {phone}  password {DEMO_PASSWORD}" for phone, _, role in DEMO_ACCOUNTS
    ]
    log.warning("\n".join(lines))
