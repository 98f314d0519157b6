"""The OpenAPI document, with examples that are valid requests on the day it is read."""

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
        return document

    app.openapi = openapi  # type: ignore[method-assign]
