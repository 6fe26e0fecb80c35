"""The periodic report's CSV as GET /api/reports/period.csv and `gridpatrol report --csv` write it
(one code for both, so that the file is the same bytes wherever it is asked for): the plain flavour with
the column and category ids, for scripts; the excel flavour, with `lang`, named for a person in a
language of the catalogue. No fastapi here: the CLI writes it too."""

from __future__ import annotations

from collections.abc import Callable

from api.cases import period_report
from api.http.i18n import Translator


def csv_header(t: Translator) -> tuple[str, ...]:
    """period_report.CSV_HEADER's columns named in `t`'s language, in their order: the excel flavour's
    headings for a person (the plain CSV keeps the column ids, for scripts)."""

    def heading(column: str) -> str:
        if column.startswith("rejected_"):
            reason = column.removeprefix("rejected_")
            name = t(
                "reports.reason.unspecified" if reason == period_report.UNSPECIFIED else f"reason.{reason}"
            )
            return t("reports.csv_col.rejected_reason", reason=name)
        for suffix, key in (("_median_h", "reports.csv_col.median"), ("_p90_h", "reports.csv_col.p90")):
            if column.endswith(suffix):
                return t(key, what=t("reports.time." + column.removesuffix(suffix)))
        return t(f"reports.csv_col.{column}")

    return tuple(heading(column) for column in period_report.CSV_HEADER)


def report_csv(
    report: period_report.PeriodReport, *, flavour: period_report.CsvFlavour, lang: str | None = None
) -> str:
    """The report's CSV file as text, its BOM first (period_report.csv_text): with `lang` (one of
    i18n.LANGUAGES; the caller checks it, and that the flavour is excel) its headings and categories
    named in that language, a site's own category (no name in the catalogue) by its id, and the cases
    outside every cell and a cell a grid import removed named in the words of the /reports page."""
    if lang is None:
        text = period_report.csv_text(report, flavour=flavour)
        return period_report.CSV_BOM + text
    t = Translator(lang)
    text = period_report.csv_text(
        report,
        flavour=flavour,
        header=csv_header(t),
        category_name=_category_namer(t),
        outside_name=t("reports.no_cell"),
        removed_name=t("reports.removed_cell"),
    )
    return period_report.CSV_BOM + text


def _category_namer(t: Translator) -> Callable[[str], str]:
    def category_name(category: str) -> str:
        return t(f"category.{category}") if t.has(f"category.{category}") else category

    return category_name
