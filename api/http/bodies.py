"""Request bodies that may come as JSON or as a form, read by one helper.

A route that takes a small body (a login, a case's transition) declares it as a pydantic model and
takes it through `body_of(Model)`: an `application/json` object, an `application/x-www-form-urlencoded`
form or a `multipart/form-data` form (the only one that can carry files) are validated by the same
model, with the same errors as FastAPI's own (422 naming each field). `request_body(Model)` is the
OpenAPI requestBody of such a route: the three content types with the model's schema.

As with FastAPI's form parameters, an empty form field counts as not sent. A urlencoded field whose
bytes are not UTF-8 is a 422 naming it (Starlette would put U+FFFD in their place, and a note would be
stored other than sent, where the same bytes in JSON are refused).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from api.errors import InputError

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class BodyError(InputError):
    """A body that is neither a JSON object nor a form: 415 for another content type, 400 for JSON
    that does not parse, 422 for JSON that is no object."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__("body", reason, status=status)


@dataclass
class Received(Generic[M]):
    """A body as received: its validated fields and, from a multipart form, its files by field name."""

    fields: M
    files: dict[str, UploadFile] = field(default_factory=dict)


def body_of(
    model: type[M], *, files: tuple[str, ...] = ()
) -> Callable[[Request], AsyncIterator[Received[M]]]:
    """A dependency reading the body as `model` (and, from a multipart form, the `files` fields);
    the form's spooled files are closed when the request ends."""

    async def read(request: Request) -> AsyncIterator[Received[M]]:
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type == JSON:
            yield Received(_validate(model, await _json_object(request)))
            return
        if content_type not in FORMS:
            raise BodyError(f"must be JSON ({JSON}) or a form ({', '.join(FORMS)})", 415)
        if content_type == FORMS[0]:
            _check_utf8_form(await request.body())  # kept by the request: form() parses the same bytes
        form = await request.form()  # a malformed form is Starlette's 400
        try:
            data: dict[str, Any] = {}
            sent: dict[str, UploadFile] = {}
            for key, value in form.multi_items():
                if key in files:
                    if isinstance(value, UploadFile) and value.filename:
                        sent[key] = value
                elif isinstance(value, str) and value != "":
                    data[key] = value
            yield Received(_validate(model, data), sent)
        finally:
            await form.close()

    return read


def _check_utf8_form(body: bytes) -> None:
    """Refuse a urlencoded form whose names or values, percent-decoded, are not UTF-8 (422 naming the
    field and the first bad byte)."""
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        raw_name, raw_value = (unquote_to_bytes(part.replace(b"+", b" ")) for part in (name, value))
        for raw in (raw_name, raw_value):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                field_name = raw_name.decode("utf-8", "replace")[:64] or "body"
                raise InputError(
                    field_name, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start})"
                ) from None


async def _json_object(request: Request) -> Mapping[str, Any]:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"not valid JSON ({exc})", 400) from None
    if not isinstance(data, dict):
        raise BodyError("must be a JSON object", 422)
    return data


def _validate(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # FastAPI's own shape: the handler in api.http.app names each field
        raise RequestValidationError(
            [{"loc": ("body", *err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
        ) from None


def request_body(model: type[BaseModel], *, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI requestBody of a route reading `model` through body_of: JSON, urlencoded and
    multipart, the last with the `files` fields (name -> description) as binary parts."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.pop("$defs", {}))
    form = _without_null(schema)  # a form field is text or not sent; it cannot be null
    multipart = form
    if files:
        properties = dict(form.get("properties", {}))
        for name, description in files.items():
            properties[name] = {"type": "string", "format": "binary", "description": description}
        multipart = {**form, "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": schema},
                FORMS[0]: {"schema": form},
                FORMS[1]: {"schema": multipart},
            },
        }
    }


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema as a form's: each optional `X | None` field is just X (left out when not
    sent), and a null default is no default."""
    properties = {}
    for name, prop in schema.get("properties", {}).items():
        alternatives = [a for a in prop.get("anyOf", ()) if a.get("type") != "null"]
        if "anyOf" in prop and len(alternatives) == 1:
            prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **alternatives[0]}
        if "default" in prop and prop["default"] is None:
            prop = {k: v for k, v in prop.items() if k != "default"}
        properties[name] = prop
    return {**schema, "properties": properties}


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """A JSON schema with its `#/$defs/...` references replaced by what they name (the OpenAPI
    document has no $defs of a request body's own)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node
