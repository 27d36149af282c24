"""Mail HTML through the sanitizer: nothing active survives, pictures only as allowed;
and the forwarding block of a Sieve script, written and read back."""

from __future__ import annotations

import pytest

from correo.sieve import check
from correo.web.forwarding import forward_script, forward_settings, valid_address
from correo.web.sanitize import FRAME_CSP, frame_csp, sanitize_html

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href=" JaVaScRiPt:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    "<math><mtext><script>alert(1)</script></mtext></math>",
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<form action="https://evil.example/"><input name=a></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<style>@import url(https://evil.example/x.css);</style>",
    '<p style="background-image:url(https://evil.example/x.png)">x</p>',
    '<p style="background:url(https://evil.example/x.png)">x</p>',
    '<table background="https://evil.example/x.png"><tr><td>x</td></tr></table>',
    '<video poster="https://evil.example/x.png"></video>',
    '<base href="https://evil.example/">',
    '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">',
    "<div><!--<script>alert(1)</script>--></div>",
    "<img src=https://evil.example/track.gif>",
    '<img srcset="https://evil.example/x.png 1x">',
]


@pytest.mark.parametrize("html", HOSTILE)
def test_nothing_active_or_remote_survives(html: str) -> None:
    out = sanitize_html(html, lambda cid: None, images=False).html.lower()
    for bad in ("<script", "javascript:", "evil.example", "onerror", "onload", "<iframe",
                "<object", "<embed", "<form", "<meta", "<link", "<style", "<base", "<svg",
                "data:text", "data:image/svg"):  # fmt: skip
        assert bad not in out, (html, out)


def test_pictures_cid_data_and_remote_on_request() -> None:
    html = (
        '<img src="cid:logo@x"><img src="cid:unknown@x">'
        '<img src="data:image/png;base64,iVBORw0KGgo="><img src="https://ok.example/a.png">'
    )
    blocked = sanitize_html(html, {"logo@x": "/dl/1"}.get, images=False)
    assert '<img src="/dl/1">' in blocked.html
    assert "data:image/png" in blocked.html
    assert "ok.example" not in blocked.html and blocked.blocked == 1
    shown = sanitize_html(html, {"logo@x": "/dl/1"}.get, images=True)
    assert "https://ok.example/a.png" in shown.html and shown.blocked == 0


def test_links_open_outside_and_styles_keep_safe_properties() -> None:
    out = sanitize_html(
        '<a href="https://ok.example/">go</a><p style="color: red; position: fixed">t</p>',
        lambda cid: None,
        images=False,
    ).html
    assert 'target="_blank"' in out and 'rel="noopener noreferrer"' in out
    assert "color:red" in out.replace(" ", "") and "position" not in out


def test_frame_csp() -> None:
    assert "script-src" not in FRAME_CSP and "default-src 'none'" in FRAME_CSP
    assert "https:" not in FRAME_CSP and "https:" in frame_csp(True)


def test_forwarding_block_round_trip_and_checks() -> None:
    own = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'
    script = forward_script(own, ["a@b.example", "c@d.example"], keep=True)
    assert forward_settings(script) == {"to": ["a@b.example", "c@d.example"], "keep": True}
    assert check(script) == []
    assert script.count('redirect :copy "') == 2 and own.splitlines()[1] in script
    moved = forward_script(script, ["e@f.example"], keep=False)
    assert (
        'redirect "e@f.example";' in moved
        and ":copy" not in moved.split("correo:forward-end")[0].split("begin")[1]
    )
    assert check(moved) == []
    assert forward_script(moved, [], keep=True) == own
    assert (
        not valid_address('x"@y.example') and not valid_address("a b@c") and valid_address("a@b.c")
    )
