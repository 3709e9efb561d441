"""Verification codes by SMS through Alibaba Cloud SMS (Dysmsapi ``SendSms``).

Requests use Alibaba Cloud's RPC style: every parameter in the query string, signed with
signature version 1.0 (HMAC-SHA1 over ``GET&%2F&`` plus the percent-encoded canonical query,
keyed with the AccessKey secret followed by ``&``). The answer is JSON whose ``Code`` is ``OK``
when the message was accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from servicekit.errors import (
    FieldError,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)

log = logging.getLogger(__name__)

API_VERSION = "2017-05-25"
#: Provider codes that describe the recipient, not the provider.
_UNREACHABLE = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT"}
_RATE_LIMITED = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling.User"}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the RPC signature wants it: only ``A-Za-z0-9-_.~`` left as is."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params)
    )


def sign(params: Mapping[str, str], secret: str, method: str = "GET") -> str:
    """Signature v1.0 of ``params`` (which must not contain ``Signature``)."""
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def recipient(phone: str) -> str:
    """Dysmsapi's number format: mainland numbers without their country code, others with the
    country code and no ``+``."""
    if phone.startswith("+86"):
        return phone[3:]
    return phone.removeprefix("+")


class AliyunSmsSender:
    """Sends each code with one template; the template's ``${code}`` variable gets the code."""

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        endpoint: str = "https://dysmsapi.aliyuncs.com/",
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        self.template_code = template_code
        self.endpoint = endpoint
        self.timeout = timeout
        self.transport = transport

    def request_params(self, phone: str, code: str) -> dict[str, str]:
        params = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": recipient(phone),
            "RegionId": "cn-hangzhou",
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps({"code": code}, separators=(",", ":")),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        params["Signature"] = sign(params, self._secret)
        return params

    async def send(self, phone: str, purpose: str, code: str) -> None:
        params = self.request_params(phone, code)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
                response = await http.get(self.endpoint, params=params)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("SMS provider unreachable: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "The SMS provider cannot be reached; try again shortly.",
                code="sms_unavailable",
                retry_after=30,
            ) from exc
        provider_code = str(answer.get("Code", "")) if isinstance(answer, dict) else ""
        if provider_code == "OK":
            log.info(
                "verification code (%s) accepted by the SMS provider, BizId %s",
                purpose,
                answer.get("BizId"),
            )
            return
        log.warning(
            "SMS provider refused a message: %s (%s), RequestId %s",
            provider_code or response.status_code,
            answer.get("Message") if isinstance(answer, dict) else None,
            answer.get("RequestId") if isinstance(answer, dict) else None,
        )
        if provider_code in _UNREACHABLE:
            raise ValidationFailed(
                [
                    FieldError(
                        "phone", "unreachable", "This phone number cannot receive text messages."
                    )
                ],
                "This phone number cannot receive text messages.",
                code="phone_unreachable",
            )
        if provider_code in _RATE_LIMITED:
            raise TooManyRequests(
                60,
                "Too many text messages to this phone; try again later.",
                code="sms_rate_limited",
            )
        raise Problem(502, "sms_send_failed", "The SMS provider refused the message.")
