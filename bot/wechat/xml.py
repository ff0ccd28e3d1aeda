"""Hardened XML intake for WeChat callbacks.

WeChat bodies are flat ``<xml>`` documents. We refuse anything a real platform never
sends (DTDs, entity declarations, duplicated top-level elements) before the parser can
expand it, strip characters XML 1.0 forbids, and hand back plain ``dict[str, Any]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

# XML 1.0 §2.2: these code points are illegal anywhere in a document.
_ILLEGAL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Any markup declaration (<!DOCTYPE, <!ENTITY, <!ELEMENT …) except CDATA and comments.
_DECLARATION = re.compile(r"<!(?!\[CDATA\[|--)")


class BadPayload(ValueError):
    """The body is not a well-formed, acceptable WeChat XML document."""


def strip_illegal_chars(text: str) -> str:
    """Remove characters that XML 1.0 forbids (WeChat users can type some of them)."""
    return _ILLEGAL_CHARS.sub("", text)


def parse_xml(raw: str | bytes) -> dict[str, Any]:
    """Parse a WeChat ``<xml>`` document into a dict of its top-level elements.

    Missing optional elements are simply absent; empty elements become ``""``.
    Raises :class:`BadPayload` for anything malformed or hostile.
    """
    text = _decode(raw)
    text = strip_illegal_chars(text)
    if _DECLARATION.search(text):
        raise BadPayload("markup declarations (DTD/ENTITY) are not allowed")
    flat = _parse_flat(text)
    if flat is not None:
        return flat
    try:
        doc = xmltodict.parse(text, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise BadPayload(f"not well-formed XML: {exc}") from exc
    root = doc.get("xml") if isinstance(doc, dict) else None
    if root is None:
        root = {} if isinstance(doc, dict) and "xml" in doc else None
    if not isinstance(root, dict):
        raise BadPayload("the root element must be <xml>")
    result: dict[str, Any] = {}
    for key, value in root.items():
        if key.startswith("@"):
            continue
        if isinstance(value, list):
            raise BadPayload(f"element <{key}> appears more than once")
        result[key] = "" if value is None else value
    return result


# Most callbacks are flat: <xml> holding simple elements, text or one CDATA section each.
# Those are read with two anchored regexes (the hot path); anything else — nesting,
# attributes, entities, split CDATA — goes to the real parser, which decides.
_FLAT_DOC = re.compile(r"\s*(?:<\?xml[^>]*\?>\s*)?<xml>(.*)</xml>\s*", re.DOTALL)
_FLAT_CHILD = re.compile(
    r"\s*<([A-Za-z_][\w.\-]*)(?:/>|>(?:<!\[CDATA\[(.*?)\]\]>|([^<&]*))</\1>)", re.DOTALL
)


def _parse_flat(text: str) -> dict[str, Any] | None:
    doc = _FLAT_DOC.fullmatch(text)
    if doc is None:
        return None
    body, pos, result = doc.group(1), 0, {}
    while (child := _FLAT_CHILD.match(body, pos)) is not None:
        name, cdata, plain = child.groups()
        if cdata is not None and ("]]>" in cdata or "<![CDATA[" in cdata):
            return None  # several CDATA sections: not flat
        if name in result:
            raise BadPayload(f"element <{name}> appears more than once")
        result[name] = (cdata if cdata is not None else plain or "").strip()
        pos = child.end()
    return result if not body[pos:].strip() else None


# The encrypted envelope: <xml><ToUserName/><Encrypt/>[<AgentID/>]</xml>. Only the
# ciphertext matters (msg_signature authenticates it), so it is taken with one anchored
# search instead of a second full XML parse; base64 never contains '<' or ']'.
_DECLARATION_BYTES = re.compile(rb"<!(?!\[CDATA\[|--)")
_ENCRYPT = re.compile(rb"<Encrypt>\s*(?:<!\[CDATA\[([^\]<]*)\]\]>|([^<]*))\s*</Encrypt>")


def envelope_ciphertext(raw: bytes) -> str:
    """The ``Encrypt`` element of an encrypted callback envelope (exactly one, non-empty)."""
    if _DECLARATION_BYTES.search(raw):
        raise BadPayload("markup declarations (DTD/ENTITY) are not allowed")
    found = _ENCRYPT.findall(raw)
    if len(found) != 1:
        raise BadPayload("the envelope must hold exactly one <Encrypt>")
    value: bytes = (found[0][0] or found[0][1]).strip()
    if not value:
        raise BadPayload("missing required element <Encrypt>")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise BadPayload("<Encrypt> is not base64") from None


def text_of(data: Mapping[str, Any], key: str) -> str:
    """Return the text of a top-level element, ``""`` when absent or empty."""
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("#text")
        if inner is None and all(k.startswith("@") for k in value):
            return ""
        if isinstance(inner, str):
            return inner
    raise BadPayload(f"element <{key}> must hold text")


def require_text(data: Mapping[str, Any], key: str) -> str:
    """Return a mandatory element's text; raise :class:`BadPayload` when missing or empty."""
    value = text_of(data, key)
    if not value:
        raise BadPayload(f"missing required element <{key}>")
    return value


def _decode(raw: str | bytes) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload("body is not valid UTF-8") from exc
