"""Raw input decoding and a YAML reader built on the parser's event stream.

No PyYAML constructor ever runs: the document becomes plain dicts, lists, strings, booleans
and None, or a :class:`KubeconfigError`.
"""

from __future__ import annotations

import re
from typing import Final

import yaml

from moonlander.credentials.fields import _field
from moonlander.credentials.model import KubeconfigError, Policy

_MAX_NODES: Final = 10_000  # scalars + collections; real kubeconfigs have a few hundred
_MAX_DEPTH: Final = 64  # keeps later recursive walks (==, json.dumps) far from the limit

# Prefer libyaml for speed; both parsers produce the same events for what we accept.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

# Same set PyYAML's reader rejects; checked up front so libyaml (more lenient) agrees.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

# YAML 1.1 plain-scalar nulls/booleans, as both PyYAML and Go's yaml.v2 resolve them.
_YAML_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})
_YAML_TRUE: Final = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
_YAML_FALSE: Final = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})


def _decode_input(raw: bytes | str, policy: Policy) -> str:
    if isinstance(raw, str):
        # A str has at least as many UTF-8 bytes as characters: refuse huge input before encoding.
        if len(raw) > policy.max_bytes:
            raise KubeconfigError(
                f"the kubeconfig is larger than the {policy.max_bytes}-byte limit",
                reason="TooLarge",
            )
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise KubeconfigError(
                "the kubeconfig is not valid UTF-8 (it contains lone surrogates)",
                reason="NotUTF8",
            )
    elif isinstance(raw, bytes | bytearray):
        data = bytes(raw)
    else:
        raise KubeconfigError("the kubeconfig must be bytes or str", reason="InvalidData")
    if len(data) > policy.max_bytes:
        raise KubeconfigError(
            f"the kubeconfig is {len(data)} bytes, more than the {policy.max_bytes}-byte limit",
            reason="TooLarge",
        )
    try:
        text = data.decode("utf-8")
        bad_offset = -1
    except UnicodeDecodeError as exc:
        text, bad_offset = "", exc.start
    if bad_offset >= 0:
        raise KubeconfigError(
            f"the kubeconfig is not valid UTF-8 (first bad byte at offset {bad_offset})",
            reason="NotUTF8",
        )
    if "\x00" in text:
        raise KubeconfigError(
            f"the kubeconfig contains a NUL byte at offset {data.index(0)}", reason="NULByte"
        )
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is harmless
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise KubeconfigError(
            f"invalid YAML: control character U+{ord(bad.group()):04X} on line {line} "
            "is not allowed",
            reason="InvalidYAML",
        )
    return text


def _event_position(event: yaml.Event) -> str:
    mark = getattr(event, "start_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _plain_scalar(event: yaml.ScalarEvent) -> object:
    if event.implicit[0]:  # plain (unquoted) scalar: resolve YAML 1.1 null/bool like Go does
        if event.value in _YAML_NULLS:
            return None
        if event.value in _YAML_TRUE:
            return True
        if event.value in _YAML_FALSE:
            return False
    # Numbers, timestamps etc. stay text: every non-boolean kubeconfig field is a string.
    return event.value


class _MappingFrame:
    __slots__ = ("items", "key")

    def __init__(self) -> None:
        self.items: dict[str, object] = {}
        self.key: str | None = None


def _build(text: str) -> object:
    """Turn the YAML event stream into plain dicts/lists/str/bool/None.

    No PyYAML constructor ever runs: tags, anchors and aliases are refused as events arrive,
    before anything is built, and size/depth are bounded, so neither object construction tricks
    nor alias bombs nor deep nesting (recursion) can happen. Duplicate keys, which other
    parsers resolve differently, are refused too.
    """
    documents: list[object] = []
    stack: list[_MappingFrame | list[object]] = []
    nodes = 0

    def attach(value: object, event: yaml.NodeEvent) -> None:
        if not stack:
            documents.append(value)
            return
        parent = stack[-1]
        if isinstance(parent, list):
            parent.append(value)
        elif parent.key is None:
            if not isinstance(event, yaml.ScalarEvent):
                raise KubeconfigError(
                    f"invalid YAML: mapping keys must be strings{_event_position(event)}",
                    reason="InvalidYAML",
                )
            if event.value in parent.items:
                raise KubeconfigError(
                    f"duplicate key {_field(event.value)}{_event_position(event)}: different "
                    "parsers would disagree about which value wins",
                    reason="DuplicateKey",
                )
            parent.key = event.value
        else:
            parent.items[parent.key] = value
            parent.key = None

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            if documents or stack:
                raise KubeconfigError(
                    "invalid YAML: only one YAML document is allowed", reason="InvalidYAML"
                )
            if getattr(event, "tags", None):
                raise KubeconfigError(
                    "YAML %TAG directives are not allowed", reason="YAMLTagsNotAllowed"
                )
            continue
        if not isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
            continue
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise KubeconfigError(
                f"YAML anchors and aliases (&, *) are not allowed{_event_position(event)}: "
                "they enable alias bombs and hide content",
                reason="YAMLAliasesNotAllowed",
            )
        if not isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            continue  # no other node events exist
        if event.tag is not None:
            raise KubeconfigError(
                f"YAML tags (like !!str or !foo) are not allowed{_event_position(event)}",
                reason="YAMLTagsNotAllowed",
            )
        nodes += 1
        if nodes > _MAX_NODES:
            raise KubeconfigError(
                f"the kubeconfig has more than {_MAX_NODES} YAML nodes", reason="TooComplex"
            )
        if isinstance(event, yaml.ScalarEvent):
            attach(_plain_scalar(event), event)
            continue
        if len(stack) >= _MAX_DEPTH:
            raise KubeconfigError(
                f"the kubeconfig is nested more than {_MAX_DEPTH} levels deep",
                reason="TooComplex",
            )
        if isinstance(event, yaml.MappingStartEvent):
            frame = _MappingFrame()
            attach(frame.items, event)
            stack.append(frame)
        else:
            items: list[object] = []
            attach(items, event)
            stack.append(items)
    return documents[0] if documents else None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # str(exc) quotes the offending source line (which may hold a token), so build our own
    # message from the problem text with anything quoted removed, plus the position.
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "syntax error"
    problem = re.sub(r"'[^']{4,}'|\"[^\"]{4,}\"", "'...'", str(problem))[:120]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"invalid YAML: {problem}{where}"


def _load(raw: bytes | str, policy: Policy) -> object:
    text = _decode_input(raw, policy)
    try:
        return _build(text)
    except yaml.YAMLError as exc:
        message = _yaml_problem(exc)
    # Raised outside the except block so the YAMLError (whose text quotes the document) is not
    # attached as __context__ and cannot leak through a logged traceback.
    raise KubeconfigError(message, reason="InvalidYAML")
