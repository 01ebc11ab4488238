"""The ticket and invoice PDFs, drawn with ReportLab from plain data (no database here).

Both renderers are pure: the same document data gives the same bytes (ReportLab's
`invariant` mode leaves out the creation date and the random file id), so a stored file can
be named after a fingerprint of its data (`fingerprint`) and rendered again only when what it
shows has changed. Text uses the standard Helvetica fonts (Latin-1 plus the euro sign);
characters outside them print as a box.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, A6
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen import canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from boxoffice.tickets.qrcode import qr_image

# Image streams stay binary (Flate only): without ReportLab's C accelerator its ASCII85
# encoding runs in Python and cost more than drawing a tickets page.
rl_config.useA85 = 0

# Pixels per QR module in the embedded image (the page scales it to its size).
QR_PIXELS_PER_MODULE = 4

# Part of every fingerprint: a change to the layout below gives new files, not stale ones.
LAYOUT_VERSION = 2  # 2: QR codes by zint (zxing-cpp), other masks than before


def money(amount: Decimal, currency: str) -> str:
    """12.5 -> '12.50 EUR'; thousands are grouped: '1,234.00 EUR'."""
    return f"{amount:,.2f} {currency}"


def percent(rate: Decimal) -> str:
    """0.0700 -> '7%', 0.0550 -> '5.5%', 0 -> '0%'."""
    value = (rate * 100).normalize()
    return f"{value:f}%"


def local_time(moment: dt.datetime) -> str:
    """An aware local time as printed: 'Sat 14 Mar 2026, 20:15'."""
    return f"{moment:%a %d %b %Y, %H:%M}"


def fingerprint(document: TicketsDocument | InvoiceDocument) -> str:
    """A short hash of everything a document shows (and of the layout version)."""
    data = {"layout": LAYOUT_VERSION, "document": dataclasses.asdict(document)}
    canonical = json.dumps(data, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Tickets


@dataclass(frozen=True)
class TicketPage:
    seat_label: str
    seat_class: str
    token: str  # the signed QR token (tickets.signing), printed as a QR code


@dataclass(frozen=True)
class TicketsDocument:
    booking_reference: str
    movie_title: str
    age_rating: str
    theater_name: str
    theater_location: str
    screen_name: str
    hall_type: str
    start_local: dt.datetime  # in the theater's timezone
    timezone: str
    seller_name: str
    tickets: tuple[TicketPage, ...]


def render_tickets(document: TicketsDocument) -> bytes:
    """One A6 page per ticket: what, where, when, the seat, the QR code and the reference."""
    buffer = io.BytesIO()
    width, height = A6
    pdf = canvas.Canvas(buffer, pagesize=A6, invariant=1, pageCompression=1)
    pdf.setTitle(f"Tickets {document.booking_reference}")
    pdf.setAuthor(document.seller_name)
    pdf.setSubject(f"{document.movie_title}, {local_time(document.start_local)}")
    margin = 8 * mm
    text_width = width - 2 * margin
    count = len(document.tickets)
    for index, ticket in enumerate(document.tickets, start=1):
        y = height - margin
        pdf.setFont("Helvetica", 7)
        pdf.setFillColor(colors.grey)
        pdf.drawString(margin, y - 7, document.seller_name)
        pdf.drawRightString(width - margin, y - 7, f"Ticket {index} of {count}")
        y -= 12
        pdf.setFillColor(colors.black)
        pdf.setFont("Helvetica-Bold", 14)
        for line in simpleSplit(document.movie_title, "Helvetica-Bold", 14, text_width)[:3]:
            y -= 16
            pdf.drawString(margin, y, line)
        if document.age_rating:
            y -= 11
            pdf.setFont("Helvetica", 8)
            pdf.drawString(margin, y, f"Rated {document.age_rating}")
        y -= 14
        pdf.setFont("Helvetica-Bold", 10)
        pdf.drawString(margin, y, local_time(document.start_local))
        y -= 10
        pdf.setFont("Helvetica", 7)
        pdf.drawString(margin, y, f"local time ({document.timezone})")
        y -= 13
        pdf.setFont("Helvetica", 9)
        for line in simpleSplit(document.theater_name, "Helvetica", 9, text_width)[:2]:
            pdf.drawString(margin, y, line)
            y -= 11
        if document.theater_location:
            pdf.setFont("Helvetica", 7)
            for line in simpleSplit(document.theater_location, "Helvetica", 7, text_width)[:2]:
                pdf.drawString(margin, y, line)
                y -= 9
        pdf.setFont("Helvetica", 9)
        pdf.drawString(margin, y - 2, f"Hall: {document.screen_name} ({document.hall_type})")
        y -= 22
        pdf.setFont("Helvetica-Bold", 18)
        pdf.drawString(margin, y, f"Seat {ticket.seat_label}")
        pdf.setFont("Helvetica", 9)
        pdf.drawRightString(width - margin, y, ticket.seat_class)

        qr_size = min(52 * mm, y - margin - 14 - 4 * mm)
        qr_y = margin + 14
        pdf.drawImage(
            ImageReader(qr_image(ticket.token, QR_PIXELS_PER_MODULE)),
            (width - qr_size) / 2,
            qr_y,
            width=qr_size,
            height=qr_size,
        )
        pdf.setFont("Helvetica-Bold", 10)
        pdf.drawCentredString(width / 2, margin + 3, f"Booking {document.booking_reference}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Invoices


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoicePayment:
    provider: str
    reference: str
    paid_at: dt.datetime  # local
    amount: Decimal


@dataclass(frozen=True)
class InvoiceRefund:
    refunded_at: dt.datetime  # local
    amount: Decimal
    note: str


@dataclass(frozen=True)
class InvoiceDocument:
    invoice_number: str
    issue_date: dt.date  # in the theater's timezone
    seller_name: str
    seller_address: str
    seller_vat_id: str
    theater_name: str
    theater_location: str
    customer_name: str
    customer_email: str
    booking_reference: str
    movie_title: str
    screen_name: str
    start_local: dt.datetime
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    discounts: tuple[tuple[str, Decimal], ...]  # (label, amount taken off), non-zero ones
    total: Decimal
    vat_rate: Decimal
    vat_amount: Decimal  # contained in the total (prices include VAT)
    payment: InvoicePayment | None  # None: discounts paid all of it
    refunds: tuple[InvoiceRefund, ...]
    refunded_total: Decimal


def _paragraphs(lines: Sequence[str], style: ParagraphStyle) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in lines if line), style)


def render_invoice(document: InvoiceDocument) -> bytes:
    """An A4 invoice: seller and customer, number and date, lines, discounts, total with the
    VAT it contains, the payment and any refunds so far."""
    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        invariant=1,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Invoice {document.invoice_number}",
        author=document.seller_name,
        subject=f"Booking {document.booking_reference}",
    )
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["Normal"], fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.grey)
    heading = ParagraphStyle("heading", parent=styles["Heading1"], fontSize=18, spaceAfter=6)
    cur = document.currency

    seller = _paragraphs(
        [
            document.seller_name,
            document.seller_address,
            f"VAT ID {document.seller_vat_id}" if document.seller_vat_id else "",
            f"{document.theater_name}",
            document.theater_location,
        ],
        body,
    )
    customer = _paragraphs(["Bill to:", document.customer_name, document.customer_email], body)
    parties = Table([[seller, customer]], colWidths=[95 * mm, 75 * mm])
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))

    facts = Table(
        [
            ["Invoice number", document.invoice_number],
            ["Invoice date", document.issue_date.isoformat()],
            ["Booking reference", document.booking_reference],
            [
                "Performance",
                Paragraph(
                    escape(
                        f"{document.movie_title}, {local_time(document.start_local)}, "
                        f"{document.screen_name}"
                    ),
                    body,
                ),
            ],
        ],
        colWidths=[40 * mm, 130 * mm],
    )
    facts.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (0, -1), "Helvetica-Bold", 9),
                ("FONT", (1, 0), (1, -1), "Helvetica", 9),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )

    rows: list[list[object]] = [["Description", "Qty", "Unit price", "Amount"]]
    for line in document.lines:
        rows.append(
            [
                Paragraph(escape(line.description), body),
                str(line.quantity),
                money(line.unit_price, cur),
                money(line.amount, cur),
            ]
        )
    first_total_row = len(rows)
    rows.append(["Subtotal", "", "", money(document.subtotal, cur)])
    for label, amount in document.discounts:
        rows.append([label, "", "", money(-amount, cur)])
    rows.append(["Total", "", "", money(document.total, cur)])
    total_row = len(rows) - 1
    rows.append(
        [f"VAT contained ({percent(document.vat_rate)})", "", "", money(document.vat_amount, cur)]
    )
    rows.append(["Net amount", "", "", money(document.total - document.vat_amount, cur)])
    table = Table(rows, colWidths=[95 * mm, 15 * mm, 30 * mm, 30 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEABOVE", (0, first_total_row), (-1, first_total_row), 0.5, colors.black),
                ("FONT", (0, total_row), (-1, total_row), "Helvetica-Bold", 10),
                ("LINEABOVE", (0, total_row), (-1, total_row), 0.5, colors.black),
            ]
        )
    )

    story: list[object] = [
        Paragraph("Invoice", heading),
        parties,
        Spacer(0, 6 * mm),
        facts,
        Spacer(0, 6 * mm),
        table,
        Spacer(0, 6 * mm),
    ]
    if document.payment is not None:
        paid = document.payment
        story.append(
            Paragraph(
                escape(
                    f"Paid {money(paid.amount, cur)} on {paid.paid_at:%Y-%m-%d %H:%M} "
                    f"via {paid.provider} (reference {paid.reference})."
                ),
                body,
            )
        )
    else:
        story.append(Paragraph("Nothing to pay: discounts covered the whole amount.", body))
    if document.refunds:
        story.append(Spacer(0, 4 * mm))
        refunds: list[list[object]] = [["Refunds so far", ""]]
        for item in document.refunds:
            refunds.append(
                [
                    Paragraph(escape(f"{item.refunded_at:%Y-%m-%d %H:%M} {item.note}"), body),
                    money(-item.amount, cur),
                ]
            )
        refunds.append(["Refunded in total", money(-document.refunded_total, cur)])
        refund_table = Table(refunds, colWidths=[140 * mm, 30 * mm])
        refund_table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
                    ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 9),
                    ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                    ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
                ]
            )
        )
        story.append(refund_table)
    story += [
        Spacer(0, 6 * mm),
        Paragraph(
            escape(f"All prices include {percent(document.vat_rate)} VAT. Amounts in {cur}."),
            small,
        ),
    ]
    pdf.build(story)
    return buffer.getvalue()
