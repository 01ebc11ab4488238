"""A report as plain data (`ReportTable`) and its three renderings: CSV, XLSX and PDF.

Pure functions, no database: the service builds the table, these turn it into bytes (in a
thread; ReportLab and openpyxl are CPU work).

- CSV: UTF-8, one header row, money as plain decimals ("12.50"), dates ISO, rates as
  fractions ("0.4500"); no totals row, so every line is a record.
- XLSX: one sheet, typed cells (numbers, dates, not text), number formats for money, counts
  and percentages, a bold totals row with the computed totals, frozen header, filters.
- PDF: title, range, the table with its totals, and a chart where a picture says it better
  (revenue by date as bars, or the top rows of films and snacks).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from xml.sax.saxutils import escape

ColumnKind = Literal["text", "date", "int", "money", "percent"]

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: ColumnKind = "text"
    width: float = 14  # characters, for the spreadsheet


@dataclass(frozen=True)
class Chart:
    title: str
    labels: list[str]
    values: list[float]


@dataclass
class ReportTable:
    kind: str
    title: str
    date_from: dt.date
    date_to: dt.date
    scope: str  # "All theaters" or the theater's name
    currency: str | None
    columns: list[Column]
    rows: list[list[Any]]
    totals: list[Any] | None = None  # aligned with columns; None where nothing adds up
    chart: Chart | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def subtitle(self) -> str:
        money = f", amounts in {self.currency}" if self.currency else ""
        return f"{self.scope}, {self.date_from.isoformat()} to {self.date_to.isoformat()}{money}"

    def filename(self, fmt: str) -> str:
        return f"{self.kind}-{self.date_from.isoformat()}-{self.date_to.isoformat()}.{fmt}"


def render(table: ReportTable, fmt: str) -> bytes:
    if fmt == "csv":
        return render_csv(table)
    if fmt == "xlsx":
        return render_xlsx(table)
    if fmt == "pdf":
        return render_pdf(table)
    raise ValueError(f"unknown format {fmt!r}")


# ---------------------------------------------------------------------------------------------
# CSV


def _plain(value: Any, kind: ColumnKind) -> str:
    if value is None:
        return ""
    if kind == "money":
        return f"{Decimal(value):.2f}"
    if kind == "percent":
        return f"{Decimal(value):.4f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def render_csv(table: ReportTable) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([column.key for column in table.columns])
    for row in table.rows:
        writer.writerow(
            [_plain(value, column.kind) for value, column in zip(row, table.columns, strict=True)]
        )
    return out.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------
# XLSX

_NUMBER_FORMATS: dict[ColumnKind, str] = {
    "money": "#,##0.00",
    "int": "#,##0",
    "percent": "0.0%",
    "date": "yyyy-mm-dd",
}


# Control characters XML 1.0 cannot hold: openpyxl refuses a cell with one (a name typed with
# a stray control character would make the whole report fail), so they are dropped.
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xlsx_text(value: str) -> str:
    return _XLSX_ILLEGAL.sub("", value)


def _cell_value(value: Any, kind: ColumnKind) -> Any:
    if value is None:
        return None
    if kind in ("money", "percent"):
        return float(value) if kind == "percent" else Decimal(value)
    if isinstance(value, str):
        return _xlsx_text(value)
    return value


def render_xlsx(table: ReportTable) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = table.kind.capitalize()
    sheet.append([_xlsx_text(table.title)])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([_xlsx_text(table.subtitle)])
    sheet.append([])
    header_row = 4
    sheet.append([column.title for column in table.columns])
    for cell in sheet[header_row]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append([_cell_value(v, c.kind) for v, c in zip(row, table.columns, strict=True)])
    last_row = sheet.max_row
    if table.totals is not None:
        values = [_cell_value(v, c.kind) for v, c in zip(table.totals, table.columns, strict=True)]
        sheet.append(["Total", *values[1:]])
        for cell in sheet[sheet.max_row]:
            cell.font = Font(bold=True)
    for index, column in enumerate(table.columns, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = column.width
        number_format = _NUMBER_FORMATS.get(column.kind)
        if number_format:
            for (cell,) in sheet.iter_rows(
                min_row=header_row + 1, max_row=sheet.max_row, min_col=index, max_col=index
            ):
                cell.number_format = number_format
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)
    if table.rows:
        sheet.auto_filter.ref = f"A{header_row}:{get_column_letter(len(table.columns))}{last_row}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# PDF


def _printed(value: Any, kind: ColumnKind) -> str:
    if value is None:
        return ""
    if kind == "money":
        return f"{Decimal(value):,.2f}"
    if kind == "percent":
        return f"{Decimal(value) * 100:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _chart_drawing(chart: Chart, width: float) -> Any:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    height = 200.0
    drawing = Drawing(width, height)
    drawing.add(String(0, height - 12, chart.title, fontName="Helvetica-Bold", fontSize=10))
    bars = VerticalBarChart()
    bars.x, bars.y = 40, 45
    bars.width, bars.height = width - 50, height - 75
    bars.data = [chart.values or [0.0]]
    bars.categoryAxis.categoryNames = chart.labels or [""]
    bars.categoryAxis.labels.fontSize = 6
    bars.categoryAxis.labels.angle = 45 if len(chart.labels) > 6 else 0
    bars.categoryAxis.labels.boxAnchor = "ne" if len(chart.labels) > 6 else "n"
    bars.valueAxis.valueMin = 0
    bars.valueAxis.labels.fontSize = 7
    top = max(chart.values, default=0.0)
    bars.valueAxis.valueMax = top * 1.1 if top > 0 else 1
    bars.bars[0].fillColor = colors.HexColor("#3366aa")
    bars.bars[0].strokeColor = None
    drawing.add(bars)
    return drawing


def render_pdf(table: ReportTable) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    out = io.BytesIO()
    wide = len(table.columns) > 7
    page = landscape(A4) if wide else A4
    document = SimpleDocTemplate(
        out,
        pagesize=page,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=table.title,
        invariant=True,
    )
    styles = getSampleStyleSheet()
    story: list[Any] = [
        Paragraph(escape(table.title), styles["Title"]),
        Paragraph(escape(table.subtitle), styles["Normal"]),
        Spacer(1, 6 * mm),
    ]
    if table.chart is not None and table.chart.values:
        story += [_chart_drawing(table.chart, document.width), Spacer(1, 6 * mm)]
    data: list[Sequence[str]] = [[column.title for column in table.columns]]
    data += [
        [_printed(v, c.kind) for v, c in zip(row, table.columns, strict=True)] for row in table.rows
    ]
    if table.totals is not None:
        printed = [_printed(v, c.kind) for v, c in zip(table.totals, table.columns, strict=True)]
        data.append(["Total", *printed[1:]])
    if not table.rows:
        story.append(Paragraph("No sales in this range.", styles["Italic"]))
    else:
        grid = Table(data, repeatRows=1)
        style = [
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
            ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f2f2f2")]),
        ]
        for index, column in enumerate(table.columns):
            if column.kind in ("int", "money", "percent"):
                style.append(("ALIGN", (index, 0), (index, -1), "RIGHT"))
        if table.totals is not None:
            style += [
                ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 8),
                ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
                ("BACKGROUND", (0, -1), (-1, -1), colors.white),
            ]
        grid.setStyle(TableStyle(style))
        story.append(grid)
    for note in table.notes:
        story += [Spacer(1, 3 * mm), Paragraph(escape(note), styles["Italic"])]
    document.build(story)
    return out.getvalue()
