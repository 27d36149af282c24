"""The filters form's Sieve (correo.web.filters): what it makes passes the server's Sieve
check, lives beside the vacation and forwarding blocks, and a script edited by hand is
never overwritten."""

from __future__ import annotations

from typing import Any

import pytest

from correo.sieve import check
from correo.web.filters import MAX_RULES, FilterError, filter_rules, filters_script
from correo.web.forwarding import forward_script

RULES: list[dict[str, Any]] = [
    {
        "field": "from",
        "match": "contains",
        "value": "boss@work.example",
        "actions": [{"type": "fileinto", "arg": "Work"}, {"type": "flag"}],
    },
    {
        "field": "header",
        "header": "List-Id",
        "match": "matches",
        "value": "*news*",
        "actions": [{"type": "seen"}, {"type": "stop"}],
    },
    {
        "enabled": False,
        "field": "subject",
        "match": "is",
        "value": 'say "hi" \\ there',
        "actions": [{"type": "redirect", "arg": "a@b.example"}, {"type": "discard"}],
    },
]


def test_rules_make_checked_sieve_and_read_back() -> None:
    script = filters_script("", RULES)
    assert check(script) == []
    # the flag before the move: the moved copy carries it (RFC 5232 §3)
    assert (
        'if header :contains "from" "boss@work.example" { addflag "\\\\Flagged"; fileinto "Work"; }'
        in script
    )
    assert 'if header :matches "List-Id" "*news*" { addflag "\\\\Seen"; stop; }' in script
    assert "redirect" not in script.split("# correo:filters-begin")[1]  # disabled
    found = filter_rules(script)
    assert found["editable"] is True
    assert [r["value"] for r in found["rules"]] == [r["value"] for r in RULES]
    assert found["rules"][2]["enabled"] is False
    # enabled, the quoted value is escaped (RFC 5228 §2.4.2) and still checks
    RULES_ON = [dict(r, enabled=True) for r in RULES]
    on = filters_script(script, RULES_ON)
    assert check(on) == []
    assert 'header :is "subject" "say \\"hi\\" \\\\ there"' in on
    assert 'redirect :copy "a@b.example"; discard;' in on


def test_beside_forwarding_and_removed_alone() -> None:
    with_forward = forward_script(filters_script("", RULES), ["z@y.example"], True)
    assert check(with_forward) == []
    assert filter_rules(with_forward)["editable"] is True
    fewer = filters_script(with_forward, RULES[:1])
    assert check(fewer) == []
    assert 'redirect :copy "z@y.example";' in fewer
    assert "List-Id" not in fewer
    # the forwarding block is before the rules: it runs whatever they do
    assert fewer.index("correo:forward-begin") < fewer.index("correo:filters-begin")
    none = filters_script(fewer, [])
    assert "correo:filters" not in none
    assert 'redirect :copy "z@y.example";' in none
    assert check(none) == []


def test_hand_edits_are_kept_and_shown_read_only() -> None:
    made = filters_script("", RULES)
    edited = made.replace('fileinto "Work"', 'fileinto "Play"')
    assert filter_rules(edited)["editable"] is False
    with pytest.raises(FilterError, match="edited by hand"):
        filters_script(edited, RULES)
    handwritten = 'require "fileinto";\nif address :is "from" "x@y.example" { fileinto "X"; }\n'
    assert filter_rules(handwritten) == {"rules": [], "editable": False}
    with pytest.raises(FilterError):
        filters_script(handwritten, [])
    assert filter_rules("")["editable"] is True
    assert filter_rules("# just a comment\n")["editable"] is True


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"field": "body", "match": "contains", "value": "x", "actions": [{"type": "stop"}]},
         "choose"),
        ({"field": "from", "match": "contains", "value": "", "actions": [{"type": "stop"}]},
         "missing"),
        ({"field": "from", "match": "is", "value": "a\nb", "actions": [{"type": "stop"}]},
         "one line"),
        ({"field": "header", "header": "Bad Name", "match": "is", "value": "x",
          "actions": [{"type": "stop"}]}, "not a header name"),
        ({"field": "to", "match": "is", "value": "x", "actions": []}, "actions"),
        ({"field": "to", "match": "is", "value": "x", "actions": [{"type": "reject"}]},
         "unknown action"),
        ({"field": "to", "match": "is", "value": "x",
          "actions": [{"type": "redirect", "arg": "not an address"}]}, "not an address"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_with_the_reason(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(FilterError, match=reason):
        filters_script("", [rule])


def test_at_most_so_many_rules() -> None:
    rule = {"field": "to", "match": "is", "value": "x", "actions": [{"type": "stop"}]}
    assert check(filters_script("", [rule] * MAX_RULES)) == []
    with pytest.raises(FilterError):
        filters_script("", [rule] * (MAX_RULES + 1))
    with pytest.raises(FilterError):
        filters_script("", "not a list")
