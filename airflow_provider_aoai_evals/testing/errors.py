"""The error the fake answers with, and the few shapes of 4xx the real API words the same way every time.

Builders exist for those shapes because clients (and their tests) match the API's messages, params and
codes; writing each one once keeps the wording identical wherever the fake raises it.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the fake answers with the flavor's JSON error body.

    Raised deep inside state operations so validation lives next to the data it checks, and the HTTP
    layer turns it into the right status and body shape in one place.
    """

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def missing(param: str) -> ApiError:
    return ApiError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_type(param: str, expected: str) -> ApiError:
    """``expected`` reads on from "expected ", e.g. ``"an object"`` or ``"a string, but got int instead"``."""
    return ApiError(
        400, f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type"
    )


def invalid_value(got: object, supported: str, param: str) -> ApiError:
    """``supported`` is the quoted list as the API words it, e.g. ``"'asc' and 'desc'"``."""
    return ApiError(
        400,
        f"Invalid value: '{got}'. Supported values are: {supported}.",
        param=param,
        code="invalid_value",
    )


def not_found(what: str, object_id: str, param: str) -> ApiError:
    """``what`` is the API's name of the object, e.g. ``"Eval run"``."""
    return ApiError(404, f"{what} with id '{object_id}' not found.", param=param, code="not_found")
