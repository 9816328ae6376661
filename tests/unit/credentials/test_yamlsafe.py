"""Tests for moonlander.credentials.yamlsafe: raw input decoding and the event-based YAML reader."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moonlander.credentials import (
    KubeconfigError,
    Policy,
    parse_kubeconfig,
    yamlsafe,
)

from ...support.kubeconfigs import (
    BILLION_LAUGHS,
    DEFAULT,
    FAST,
    PKI,
    Builder,
    _outcome,
    base_doc,
    check_rejected,
    doc_with,
    raw,
)

MERGE_KEY = """\
base: &base {token: abc}
users:
- name: admin
  user:
    <<: *base
"""


P = pytest.param
REJECTIONS = [
    # --- YAML safety ----------------------------------------------------------------------------
    P(
        raw("users: !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "YAML tags",
        id="python-apply-tag",
    ),
    P(
        raw("current-context: !!python/name:os.system\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "YAML tags",
        id="python-name-tag",
    ),
    P(raw("kind: !foo Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="local-tag"),
    P(raw("kind: !!str Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="str-tag"),
    P(raw("kind: ! Config\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="non-specific-tag"),
    P(
        raw("kind: !<tag:yaml.org,2002:str> Config\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "tags",
        id="verbatim-tag",
    ),
    P(raw("users: !!seq []\n"), DEFAULT, "YAMLTagsNotAllowed", "tags", id="collection-tag"),
    P(
        raw("%TAG !k! tag:example.com,2024:\n---\nkind: Config\n"),
        DEFAULT,
        "YAMLTagsNotAllowed",
        "%TAG",
        id="tag-directive",
    ),
    P(
        raw("kind: &k Config\n"),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "anchors and aliases",
        id="anchor",
    ),
    P(
        raw("a: &k Config\nkind: *k\n"),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "anchors and aliases",
        id="alias",
    ),
    P(raw(MERGE_KEY), DEFAULT, "YAMLAliasesNotAllowed", "(line 1, column 7)", id="merge-alias"),
    P(
        raw(BILLION_LAUGHS),
        DEFAULT,
        "YAMLAliasesNotAllowed",
        "alias bombs",
        id="billion-laughs",
    ),
    P(raw("a: " + "[" * 100 + "]" * 100), DEFAULT, "TooComplex", "nested", id="deep-nesting"),
    P(
        raw("a: [" + "0," * 12_000 + "0]"),
        DEFAULT,
        "TooComplex",
        "YAML nodes",
        id="too-many-nodes",
    ),
    P(
        raw("kind: Config\nkind: Config\n"),
        DEFAULT,
        "DuplicateKey",
        'duplicate key "kind"',
        id="duplicate-key",
    ),
    P(
        raw('{"kind": "Config", "kind": "Config"}'),
        DEFAULT,
        "DuplicateKey",
        "duplicate key",
        id="duplicate-key-json",
    ),
    P(raw("{? [a] : b}"), DEFAULT, "InvalidYAML", "mapping keys", id="complex-key"),
    P(
        raw("kind: Config\n---\nkind: Config\n"),
        DEFAULT,
        "InvalidYAML",
        "only one YAML document",
        id="multiple-documents",
    ),
    P(raw("kind: [Config\n"), DEFAULT, "InvalidYAML", "invalid YAML", id="syntax-error"),
    P(raw("kind: \x07Config\n"), DEFAULT, "InvalidYAML", "U+0007", id="control-character"),
    # --- input ----------------------------------------------------------------------------------
    P(raw(b"kind: Config\n\xff\xfe"), DEFAULT, "NotUTF8", "offset 13", id="invalid-utf8"),
    P(
        raw("kind: Config\n".encode("utf-16")),
        DEFAULT,
        "NotUTF8",
        "not valid UTF-8",
        id="utf16",
    ),
    P(raw("kind: \ud800\n"), DEFAULT, "NotUTF8", "lone surrogates", id="lone-surrogate-str"),
    P(raw(b"kind: Config\x00\n"), DEFAULT, "NULByte", "offset 12", id="nul-byte"),
    P(raw("kind: Config\x00\n"), DEFAULT, "NULByte", "NUL", id="nul-in-str"),
    P(raw(b"#" * (256 * 1024 + 1)), DEFAULT, "TooLarge", "262145 bytes", id="oversize-bytes"),
    P(raw("#" * (256 * 1024 + 1)), DEFAULT, "TooLarge", "limit", id="oversize-str"),
    P(
        raw("#\u00e9" * 100),
        Policy(max_bytes=250),
        "TooLarge",
        "300 bytes",
        id="oversize-multibyte-str",
    ),
    P(
        lambda pki: doc_with(pki),
        Policy(max_bytes=100),
        "TooLarge",
        "100-byte limit",
        id="oversize-policy",
    ),
    P(raw("- kind: Config\n"), DEFAULT, "NotAKubeconfig", "not a list", id="top-level-list"),
    P(raw("Config\n"), DEFAULT, "NotAKubeconfig", "not a string", id="top-level-scalar"),
    P(raw(""), DEFAULT, "NotAKubeconfig", "empty", id="empty"),
    P(raw("# only a comment\n"), DEFAULT, "NotAKubeconfig", "empty", id="only-comment"),
    P(raw(b"\xef\xbb\xbf"), DEFAULT, "NotAKubeconfig", "empty", id="only-bom"),
]


@pytest.mark.parametrize(("build", "policy", "reason", "fragment"), REJECTIONS)
@pytest.mark.usefixtures("yaml_loader")
def test_rejected(pki: PKI, build: Builder, policy: Policy, reason: str, fragment: str) -> None:
    check_rejected(pki, build, policy, reason, fragment)


def test_json_kubeconfig(pki: PKI) -> None:
    as_json = json.dumps(base_doc(pki), indent=2)
    assert parse_kubeconfig(as_json) == parse_kubeconfig(doc_with(pki))
    assert parse_kubeconfig(as_json.encode()) == parse_kubeconfig(doc_with(pki))


def test_bom_and_crlf(pki: PKI) -> None:
    text = "\ufeff" + doc_with(pki).replace("\n", "\r\n")
    assert parse_kubeconfig(text.encode()) == parse_kubeconfig(doc_with(pki))


YAML_SYNTAX = st.text(alphabet=list("[]{}:,-?&*!|>'\"#%@` \n\tab01~.\\"), max_size=60)


@FAST
@given(st.one_of(st.text(), st.binary(), YAML_SYNTAX))
def test_arbitrary_input_only_raises_kubeconfig_error(document: str | bytes) -> None:
    result = _outcome(document)
    if isinstance(result, KubeconfigError):
        assert result.reason
        assert str(result)


# Raw control characters and line/paragraph separators would make the JSON form invalid (or
# differently folded) YAML: a property of YAML, not of our reader.
YAML_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Zl", "Zp")), max_size=10)
PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | YAML_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(YAML_TEXT, children, max_size=4)
    ),
    max_leaves=25,
)


@FAST
@given(PLAIN_DATA, st.sampled_from(["yaml", "json", "flow"]))
def test_yaml_reader_agrees_with_pyyaml(value: Any, style: str) -> None:
    """The event-based reader builds what PyYAML's safe_load would (for str/bool/null data)."""
    if style == "json":
        text = json.dumps(value, ensure_ascii=False)  # YAML has no surrogate-pair escapes
    else:
        text = yaml.safe_dump(value, default_flow_style=style == "flow")
    assert yamlsafe._build(text) == yaml.safe_load(text) == value
