"""The comparison rule for CSV cells across the two CSV paths, stated once.

The fast path writes values (numbers as stored, dates in ISO 8601); LibreOffice with
"save as shown" false writes the same values but spells percentages ``25%``, dates
``MM/DD/YYYY``, times ``hh:mm:ss AM/PM`` and exponents ``1E+020``. Numbers compare as
floats (relative 1e-9), dates and times as datetimes on Excel's day zero, text exactly.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_US_DATE = re.compile(r"(\d\d)/(\d\d)/(\d{4})(?: (\d\d):(\d\d):(\d\d))?")
_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?)?")
_CLOCK = re.compile(r"(\d+):(\d\d):(\d\d)(?:\.(\d{3}))?(?: (AM|PM))?")
EXCEL_DAY_ZERO = dt.datetime(1899, 12, 30)


def value_of(text: str) -> Any:
    """A CSV field as a value: float, datetime or the text itself."""
    if _NUMBER.fullmatch(text):
        return float(text)
    if text.endswith("%") and _NUMBER.fullmatch(text[:-1]):
        return float(text[:-1]) / 100
    if match := _US_DATE.fullmatch(text):
        month, day, year, *clock = match.groups()
        return dt.datetime(int(year), int(month), int(day), *(int(x or 0) for x in clock))
    if match := _ISO.fullmatch(text):
        *parts, millis = match.groups()
        return dt.datetime(*(int(x or 0) for x in parts), int(millis or 0) * 1000)
    if match := _CLOCK.fullmatch(text):
        hours, minutes, seconds, millis, half = match.groups()
        hour = int(hours) % 12 + (12 if half == "PM" else 0) if half else int(hours)
        return EXCEL_DAY_ZERO + dt.timedelta(hours=hour, minutes=int(minutes),
                                             seconds=int(seconds),
                                             milliseconds=int(millis or 0))
    return text


def _normal(value: Any) -> Any:
    """openpyxl's cell values in the same terms as value_of."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.time):
        return EXCEL_DAY_ZERO.replace(hour=value.hour, minute=value.minute,
                                      second=value.second, microsecond=value.microsecond)
    return value


def same_value(field: str, other: Any) -> bool:
    """Whether a CSV field holds the same value as another field or an openpyxl value."""
    a = value_of(field)
    b = value_of(other) if isinstance(other, str) else _normal(other)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return abs(a - b) < dt.timedelta(milliseconds=1)
    return bool(a == b)
