"""Text written for people: cells a spreadsheet will not run, values that are never echoed.

Two decisions, made here once for every stage that writes something a person opens or reads:

- :func:`spreadsheet_cell`: a text cell of a CSV or XLSX file, neutralised against formula
  injection as OWASP advises (CSV injection): text starting with ``=``, ``+``, ``-``, ``@``, a
  TAB or a carriage return gets a leading apostrophe, so Excel and LibreOffice show it as text
  instead of running it. Numbers stay numbers, and text that is a plain decimal number
  (``-3.5``) is left as it is. :func:`from_spreadsheet_cell` undoes it when a list comes back.
- :func:`shown_value`: whether a value read from a file a person filled in may be echoed (on
  the terminal, in a rejection file). Only short plain codes are shown; a value that looks like
  a resident registration number, a phone number or a personal name, and any other free text
  (which may hold one), is withheld: callers then name the row and the column instead.

Pure functions; imports nothing from the project.
"""

from __future__ import annotations

import numbers
import re

import pandas as pd

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"  # the apostrophe spreadsheets read as "this cell is text"
WITHHELD = "(not shown)"  # what stands in for a value that is not echoed

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Text that would be run, possibly behind apostrophes added before (so that escaping is undone
# exactly: a text that really starts with "'=" is written "''=" and read back as "'=").
_NEEDS_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
_FIRST_CHARACTERS = frozenset("".join(FORMULA_TRIGGERS) + ESCAPE)
_PLAIN_CODE = re.compile(r"[A-Za-z0-9_./:-]{1,24}")
_SEPARATORS = re.compile(r"[\s.\-–—/()]+")
# YYMMDD, then the 7 digits (the last six may be masked with *), with or without a hyphen.
_RESIDENT_NUMBER = re.compile(r"\d{2}[01]\d[0-3]\d\s*[-–]?\s*[0-9][0-9*]{6}")
# Korean phone numbers: 0 then 8 to 10 digits; +82 / 82 then 8 to 10 digits (the 0 dropped);
# a mobile number whose leading 0 a spreadsheet dropped (10 then 8 digits).
_PHONE_DIGITS = re.compile(r"(?:\+?82)?0\d{8,10}|\+?82\d{8,10}|10\d{8}")
_HANGUL_NAME = re.compile(r"[가-힣]{1,4}(?:\s?[가-힣]{1,4})?")
_LATIN_NAME = re.compile(r"[A-Za-z]+(?:[ .'-]+[A-Za-z]+){1,3}\.?")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _missing(value: object) -> bool:
    """None, NaN, pandas' NA or NaT (a scalar)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _escaped(text: str) -> str:
    if not text or text[0] not in _FIRST_CHARACTERS:  # the common case, decided at once
        return text
    if _PLAIN_NUMBER.fullmatch(text.strip()) or not _NEEDS_ESCAPE.match(text):
        return text
    return ESCAPE + text


def spreadsheet_cell(value: object) -> object:
    """A cell for a CSV or XLSX file a person opens: text that a spreadsheet would take for a
    formula gets a leading apostrophe; numbers (and text that is a plain number) are unchanged;
    a missing value is returned as it is."""
    if isinstance(value, str):
        return _escaped(value)
    if _missing(value) or _is_number(value):
        return value
    return _escaped(str(value))


def spreadsheet_text(value: object) -> str:
    """:func:`spreadsheet_cell` as text ("" for None or a missing value): every CSV field."""
    if isinstance(value, str):
        return _escaped(value)
    if _missing(value):
        return ""
    return str(spreadsheet_cell(value))


def from_spreadsheet_cell(text: str) -> str:
    """The text :func:`spreadsheet_cell` was given, from what it wrote (its apostrophe off)."""
    if text.startswith(ESCAPE) and _NEEDS_ESCAPE.match(text[1:]):
        return text[1:]
    return text


def looks_like_resident_number(text: str) -> bool:
    """A resident registration number (``YYMMDD-NNNNNNN``, hyphen optional, tail masked or not)."""
    return bool(_RESIDENT_NUMBER.search(text))


def looks_like_phone(text: str) -> bool:
    """A Korean phone number, with any separators, ``+82`` or a dropped leading 0."""
    digits = _SEPARATORS.sub("", text.strip())
    return bool(_PHONE_DIGITS.fullmatch(digits))


def looks_like_name(text: str) -> bool:
    """A personal name: Hangul syllables (one or two words), or two to four Latin words."""
    text = text.strip()
    return bool(_HANGUL_NAME.fullmatch(text) or _LATIN_NAME.fullmatch(text))


def shown_value(value: object) -> str | None:
    """The value as text when it may be echoed, else None (withheld; "" is shown as None too).

    Shown only: a short plain code (ASCII letters, digits, ``_ . / : -``, at most 24
    characters, at least one digit, as keys and codes have) that a spreadsheet would not run and
    that looks like no resident number, phone number or name. Everything else is withheld.
    """
    if _missing(value):
        return None
    text = str(value).strip()
    if (
        not _PLAIN_CODE.fullmatch(text)
        or not any(c.isdigit() for c in text)
        or _NEEDS_ESCAPE.match(text)
        or looks_like_resident_number(text)
        or looks_like_phone(text)
        or looks_like_name(text)
    ):
        return None
    return text


def shown_or_withheld(value: object) -> str:
    """:func:`shown_value`, or :data:`WITHHELD` for a value that is there but not shown ("" for
    an empty one)."""
    if _missing(value) or str(value).strip() == "":
        return ""
    shown = shown_value(value)
    return WITHHELD if shown is None else shown
