"""Payment providers (PSPs) behind one adapter interface, and the sandbox provider."""

from __future__ import annotations

from collections.abc import Mapping

from payments.providers.base import PaymentProvider
from servicekit.errors import FieldError, NotFound, ValidationFailed


class Providers:
    """The provider adapters of this process, and which one serves each method."""

    def __init__(
        self, adapters: Mapping[str, PaymentProvider], method_providers: Mapping[str, str]
    ) -> None:
        self.adapters = dict(adapters)
        self.method_providers = dict(method_providers)

    def for_method(self, method: str) -> PaymentProvider:
        name = self.method_providers.get(method)
        adapter = self.adapters.get(name) if name is not None else None
        if adapter is None:
            raise ValidationFailed(
                [FieldError("method", "method_unavailable", f"No provider serves {method}.")]
            )
        return adapter

    def named(self, name: str) -> PaymentProvider:
        adapter = self.adapters.get(name)
        if adapter is None:
            raise NotFound(f"No provider {name!r}.", code="provider_not_found")
        return adapter
