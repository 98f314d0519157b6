"""The OpenAPI document as the API behaves: examples that are valid requests on the day it is
read, and no 422 (FastAPI's default for a bad parameter): every bad request is a 400
problem+json, documented on each operation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from samtal.times import to_datetime, zone


def with_current_examples(app: FastAPI, clock: Callable[[], int]) -> None:
    """Serve the OpenAPI document with the example period of /cdr/historik set to yesterday's
    working hours: a fixed date would fall out of the retention window (and an API fuzzer
    sending the documented example would get a 400)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = copy.deepcopy(build())  # FastAPI builds it once; the dates change daily
        day = (to_datetime(clock(), zone("UTC")) - timedelta(days=1)).date().isoformat()
        examples = {"from": f"{day} 08:00", "to": f"{day} 17:00"}
        for parameter in document["paths"]["/cdr/historik"]["get"]["parameters"]:
            example = examples.get(parameter["name"])
            if example is not None:
                parameter["schema"]["examples"] = [example]
        for operations in document["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
