"""Small pieces shared by the format readers: value messages and the checks of the fast paths."""

from __future__ import annotations

import warnings

import numpy as np

from autorec.errors import DataError

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def show(text: str, limit: int = 80) -> str:
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_rating(
    field: str, where: str, scale: tuple[float, float] | None, hint: str = ""
) -> float:
    """A rating field as a float inside ``scale``; ``hint`` follows a "not a number" message."""
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{where}: rating {field!r} is not a number{hint}") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: rating {field!r} is not a finite number")
    if scale is not None and not scale[0] <= value <= scale[1]:
        raise DataError(
            f"{where}: rating {field!r} is outside the rating scale "
            f"{_fmt(scale[0])}..{_fmt(scale[1])}"
        )
    return value


def fromstring(buf: bytes, dtype: type) -> np.ndarray | None:
    """Whitespace-separated numbers, or None when some token is not a number of that type."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(buf, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def saturated(vals: np.ndarray) -> bool:
    """np.fromstring clamps integers that overflow int64: treat the extremes as overflow."""
    return bool(((vals == INT64_MAX) | (vals == INT64_MIN)).any())


def bad_ratings(rating: np.ndarray, scale: tuple[float, float] | None) -> bool:
    if scale is None:
        return not bool(np.isfinite(rating).all())
    # comparisons with nan are False, so this also catches nan; inf is outside any finite scale
    return not bool(((rating >= scale[0]) & (rating <= scale[1])).all())
