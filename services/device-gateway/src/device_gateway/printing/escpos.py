"""Receipts and kitchen tickets as ESC/POS bytes.

Layout commands (alignment, emphasis, character size, the QR code, feed and cut) come from
python-escpos's ``Dummy`` printer, which builds exactly the bytes a real printer would get.
Chinese text is sent in the printer's Chinese mode (``FS &`` ... ``FS .``) encoded as GB18030,
the encoding that Chinese thermal printers read; other text goes through python-escpos's
code-page handling. A CJK character takes two columns, so widths are measured in columns.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from escpos.printer import Dummy

# Font A (12x24) on 58 mm and 80 mm paper.
COLUMNS = {58: 32, 80: 48}
FS_CHINESE_ON = b"\x1c\x26"
FS_CHINESE_OFF = b"\x1c\x2e"

METHOD_NAMES = {
    "cash": "Cash 现金",
    "wechat_pay": "WeChat Pay 微信",
    "alipay": "Alipay 支付宝",
    "unionpay": "UnionPay 银联",
    "card": "Card 银行卡",
    "stored_value": "Stored value 储值",
}


def columns_for(width_mm: int) -> int:
    return COLUMNS.get(width_mm, COLUMNS[80])


def text_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns."""
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)


def wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    rest = text
    while rest:
        part = fit(rest, width) or rest[0]
        lines.append(part)
        rest = rest[len(part) :]
    return lines or [""]


def two_columns(left: str, right: str, width: int) -> str:
    room = width - text_width(right) - 1
    left = fit(left, max(room, 0))
    return left + " " * (width - text_width(left) - text_width(right)) + right


def money(amount: int, currency: str = "CNY") -> str:
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    # No currency sign for CNY: "¥" has no two-byte GBK code and Chinese receipts read fine
    # without it.
    symbol = "" if currency == "CNY" else f"{currency} "
    return f"{sign}{symbol}{amount // 100}.{amount % 100:02d}"


class Ticket:
    """A document being laid out for one paper width."""

    def __init__(self, width_mm: int) -> None:
        self.columns = columns_for(width_mm)
        self.printer = Dummy()
        self.printer.hw("INIT")

    def style(
        self,
        *,
        align: str = "left",
        bold: bool = False,
        double: bool = False,
        tall: bool = False,
    ) -> None:
        if double:
            self.printer.set(align=align, bold=bold, double_height=True, double_width=True)
        elif tall:
            self.printer.set(align=align, bold=bold, double_height=True, double_width=False)
        else:
            self.printer.set(align=align, bold=bold, normal_textsize=True)

    def line(self, text: str = "") -> None:
        if text.isascii():
            self.printer.text(text + "\n")
        else:
            # Chinese mode: GB18030 bytes straight to the printer. Characters GB18030 cannot
            # hold (none in practice: it covers Unicode) would print as '?'.
            self.printer._raw(
                FS_CHINESE_ON + text.encode("gb18030", errors="replace") + FS_CHINESE_OFF + b"\n"
            )

    def rule(self, char: str = "-") -> None:
        self.line(char * self.columns)

    def qr(self, content: str) -> None:
        self.printer.set(align="center", normal_textsize=True)
        self.printer.qr(content, native=True, size=6 if self.columns >= 48 else 4)

    def cut(self) -> bytes:
        self.printer.cut()
        output: bytes = self.printer.output
        return output


def render(document: dict[str, Any], width_mm: int) -> bytes:
    """The ESC/POS bytes of a receipt or kitchen ticket document (see ``printing.documents``)."""
    if document["kind"] == "kitchen_ticket":
        return _kitchen_ticket(document, width_mm)
    return _receipt(document, width_mm)


def _header(t: Ticket, document: dict[str, Any]) -> None:
    if document.get("reprint"):
        t.style(align="center", bold=True)
        t.line("** REPRINT 重印 **")


def _kitchen_ticket(document: dict[str, Any], width_mm: int) -> bytes:
    t = Ticket(width_mm)
    _header(t, document)
    t.style(align="center", bold=True, double=True)
    t.line(fit(document.get("station") or "", t.columns // 2))
    if document.get("table"):
        t.line(fit(f"Table {document['table']}", t.columns // 2))
    t.style(align="left")
    t.line(f"Order #{document['order_number']}")
    t.line(document.get("at", "")[:19].replace("T", " "))
    t.rule()
    for item in document["lines"]:
        t.style(align="left", bold=True, tall=True)
        for part in wrap(f"{item['quantity']} x {item['name']}", t.columns):
            t.line(part)
        t.style(align="left")
        for modifier in item.get("modifiers", []):
            for part in wrap(f"  + {modifier}", t.columns):
                t.line(part)
        if item.get("notes"):
            for part in wrap(f"  ! {item['notes']}", t.columns):
                t.line(part)
    t.rule()
    t.printer.ln(2)
    return t.cut()


def _receipt(document: dict[str, Any], width_mm: int) -> bytes:
    t = Ticket(width_mm)
    currency = document.get("currency", "CNY")
    _header(t, document)
    t.style(align="center", bold=True, double=True)
    for part in wrap(document.get("store_name") or "", t.columns // 2):
        t.line(part)
    t.style(align="center")
    t.line(f"Order #{document['order_number']}")
    if document.get("table"):
        t.line(f"Table {document['table']}")
    t.line(document.get("at", "")[:19].replace("T", " "))
    t.style(align="left")
    t.rule()
    for item in document["lines"]:
        label = f"{item['quantity']} x {item['name']}"
        t.line(two_columns(label, money(item["total"], currency), t.columns))
        for modifier in item.get("modifiers", []):
            t.line(fit(f"  + {modifier}", t.columns))
        if item.get("notes"):
            t.line(fit(f"  ! {item['notes']}", t.columns))
    t.rule()
    t.line(two_columns("Subtotal 小计", money(document["subtotal"], currency), t.columns))
    if document.get("discount"):
        t.line(two_columns("Discount 优惠", money(-document["discount"], currency), t.columns))
    t.style(align="left", bold=True, tall=True)
    t.line(two_columns("Total 合计", money(document["total"], currency), t.columns))
    t.style(align="left")
    for tender in document.get("tenders", []):
        name = METHOD_NAMES.get(tender["method"], tender["method"])
        t.line(two_columns(name, money(tender["amount"], currency), t.columns))
    t.rule()
    if document.get("qr"):
        t.qr(document["qr"])
        t.style(align="center")
        t.line(document.get("qr_caption") or "")
    t.style(align="center")
    t.line("Thank you 谢谢惠顾")
    t.printer.ln(2)
    return t.cut()
