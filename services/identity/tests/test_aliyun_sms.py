"""The Alibaba Cloud SMS sender against a local fake of Dysmsapi that checks the RPC
signature the way the provider documents it, and an identity app that texts its codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from identity.main import code_sender_for, create_app
from identity.testing import MIGRATIONS, make_settings, new_phone
from identity.verification.aliyun import AliyunSmsSender, recipient, sign
from servicekit.bus.factory import InMemoryBus
from servicekit.testing.plugin import CreateDatabase

KEY_ID = "LTAI5tFakeKeyId"
KEY_SECRET = "fake/secret+with=odd~chars"


def _encode(value: str) -> str:
    # The documented rule: URL-encode in UTF-8, then "+" → "%20", "*" → "%2A", "%7E" → "~".
    return quote(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


class FakeDysmsapi:
    """Accepts SendSms when the signature matches; answers a provider error on demand."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.refusals: list[str] = []
        self.next_error: str | None = None
        self.app = Starlette(routes=[Route("/", self.handle, methods=["GET"])])

    async def handle(self, request: Request) -> JSONResponse:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        signature = params.pop("Signature", "")
        canonical = "&".join(f"{_encode(k)}={_encode(params[k])}" for k in sorted(params))
        to_sign = "GET&%2F&" + _encode(canonical)
        expected = base64.b64encode(
            hmac.new(f"{KEY_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if params.get("AccessKeyId") != KEY_ID or not hmac.compare_digest(signature, expected):
            self.refusals.append("SignatureDoesNotMatch")
            return JSONResponse(
                {"Code": "SignatureDoesNotMatch", "Message": "bad signature", "RequestId": "r0"},
                status_code=400,
            )
        assert params["Action"] == "SendSms"
        assert params["SignatureMethod"] == "HMAC-SHA1"
        assert params["SignatureVersion"] == "1.0"
        assert params["Version"] == "2017-05-25"
        if self.next_error is not None:
            code, self.next_error = self.next_error, None
            return JSONResponse({"Code": code, "Message": "refused", "RequestId": "r1"})
        self.messages.append(params)
        return JSONResponse({"Code": "OK", "Message": "OK", "BizId": "b1", "RequestId": "r2"})

    def code_for(self, phone: str) -> str:
        for message in reversed(self.messages):
            if message["PhoneNumbers"] == recipient(phone):
                return str(json.loads(message["TemplateParam"])["code"])
        raise AssertionError(f"no SMS to {phone}")


def sender(fake: FakeDysmsapi, secret: str = KEY_SECRET) -> AliyunSmsSender:
    return AliyunSmsSender(
        access_key_id=KEY_ID,
        access_key_secret=secret,
        sign_name="Countertop 测试",
        template_code="SMS_123456789",
        endpoint="http://dysmsapi/",
        transport=httpx.ASGITransport(app=fake.app),
    )


async def test_a_signed_request_is_accepted_with_the_message() -> None:
    fake = FakeDysmsapi()
    await sender(fake).send("+8613912345678", "login", "123456")
    [message] = fake.messages
    assert message["PhoneNumbers"] == "13912345678"
    assert message["SignName"] == "Countertop 测试"
    assert message["TemplateCode"] == "SMS_123456789"
    assert json.loads(message["TemplateParam"]) == {"code": "123456"}
    assert fake.code_for("+8613912345678") == "123456"


def test_the_signature_matches_the_providers_published_example() -> None:
    # The worked example of Alibaba Cloud's RPC signature documentation (DescribeRegions).
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert sign(params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_numbers_outside_the_mainland_keep_their_country_code() -> None:
    assert recipient("+85291234567") == "85291234567"
    assert recipient("+8613912345678") == "13912345678"


@pytest.mark.parametrize(
    ("provider_code", "status", "code"),
    [
        ("isv.MOBILE_NUMBER_ILLEGAL", 422, "phone_unreachable"),
        ("isv.BUSINESS_LIMIT_CONTROL", 429, "sms_rate_limited"),
        ("isv.SMS_TEMPLATE_ILLEGAL", 502, "sms_send_failed"),
    ],
)
async def test_provider_errors_become_problems(provider_code: str, status: int, code: str) -> None:
    fake = FakeDysmsapi()
    fake.next_error = provider_code
    with pytest.raises(Exception) as refused:
        await sender(fake).send("+8613912345678", "login", "123456")
    assert getattr(refused.value, "status", None) == status
    assert getattr(refused.value, "code", None) == code
    assert fake.messages == []


async def test_a_wrong_secret_is_refused_by_the_provider() -> None:
    fake = FakeDysmsapi()
    with pytest.raises(Exception) as refused:
        await sender(fake, secret="another").send("+8613912345678", "login", "123456")
    assert getattr(refused.value, "code", None) == "sms_send_failed"
    assert fake.refusals == ["SignatureDoesNotMatch"]


async def test_identity_texts_codes_and_refuses_a_request_the_provider_refused(
    create_database: CreateDatabase,
) -> None:
    url = await create_database("identity_sms", migrations=MIGRATIONS)
    settings = make_settings(
        url,
        code_sender="aliyun",
        aliyun_sms_access_key_id=KEY_ID,
        aliyun_sms_access_key_secret=KEY_SECRET,
        aliyun_sms_sign_name="Countertop",
        aliyun_sms_template_code="SMS_1",
        aliyun_sms_endpoint="http://dysmsapi/",
    )
    fake = FakeDysmsapi()
    texting = code_sender_for(settings)
    assert isinstance(texting, AliyunSmsSender)
    texting.transport = httpx.ASGITransport(app=fake.app)
    app = create_app(settings, bus=InMemoryBus(), code_sender=texting)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
            phone = new_phone()
            body: dict[str, Any] = {"phone": phone, "purpose": "signup"}
            sent = await client.post("/v1/verification-codes", json=body)
            assert sent.status_code == 202, sent.text
            assert len(fake.code_for(phone)) == 6

            other = new_phone()
            fake.next_error = "isv.MOBILE_NUMBER_ILLEGAL"
            refused = await client.post(
                "/v1/verification-codes", json={"phone": other, "purpose": "signup"}
            )
            assert refused.status_code == 422
            assert refused.json()["code"] == "phone_unreachable"
            # Nothing was kept for the refused message: the phone may ask again at once.
            again = await client.post(
                "/v1/verification-codes", json={"phone": other, "purpose": "signup"}
            )
            assert again.status_code == 202, again.text
