"""Client profiles (no plain-text passwords), terminal rendering, Bcc stripping."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.cli.mail import strip_bcc
from correo.message import Attachment, compose
from correo.mua.profile import ProfileError, load_account, password_for
from correo.mua.render import attachments, body_text, render

GOOD = """
default = "b"
[accounts.a]
email = "a@x.test"
imap = { host = "imap.x.test" }
[accounts.b]
email = "Bé <b@x.test>"
user = "b-login"
imap = { host = "imap.x.test", tls = "starttls" }
smtp = { host = "smtp.x.test", tls = "implicit" }
password_command = "printf %s s3cret"
"""


def test_profile_defaults_and_password_command(tmp_path: Path) -> None:
    cfg = tmp_path / "client.toml"
    cfg.write_text(GOOD)
    b = load_account(None, cfg)
    assert (b.name, b.user, b.email) == ("b", "b-login", "Bé <b@x.test>")
    assert b.imap is not None and (b.imap.port, b.imap.tls) == (143, "starttls")
    assert b.smtp is not None and b.smtp.port == 465 and b.pop3 is None
    assert password_for(b) == "s3cret"
    a = load_account("a", cfg)
    assert a.user == "a@x.test" and a.imap is not None and a.imap.port == 993


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no [accounts.NAME] table"),
        ('[accounts.a]\nemail = "a@x"\npassword = "p"\n', "plain-text passwords are refused"),
        ('[accounts.a]\nemail = "a@x"\nimap = { host = "h", tls = "ssl" }\n', "tls must be"),
        ('[accounts.a]\nemail = "a@x"\nimap = { host = "h", port = 0 }\n', "port number"),
        ("[accounts.a\n", "client.toml"),
    ],
)
def test_profile_errors(tmp_path: Path, text: str, error: str) -> None:
    cfg = tmp_path / "client.toml"
    cfg.write_text(text)
    with pytest.raises(ProfileError, match=error.replace("[", r"\[").replace(".", r"\.")):
        load_account(None, cfg)


def test_missing_account_and_failing_command(tmp_path: Path) -> None:
    cfg = tmp_path / "client.toml"
    cfg.write_text(GOOD.replace("printf %s s3cret", "false"))
    with pytest.raises(ProfileError, match="no account 'zz'"):
        load_account("zz", cfg)
    with pytest.raises(ProfileError, match="password_command failed"):
        password_for(load_account(None, cfg))


def test_render_prefers_text_and_renders_html() -> None:
    both = compose(
        from_=("Zoë", "z@x.test"), to=["b@x.test"], subject="Grüße", text="plain wins",
        html="<p>html</p>", attachments=[Attachment(b"\x00\x01", "é.bin")],
    )  # fmt: skip
    shown = render(both)
    assert "From: Zoë <z@x.test>" in shown and "Subject: Grüße" in shown
    assert (
        "plain wins" in shown and "Attachment: é.bin (application/octet-stream, 2 bytes)" in shown
    )
    html_only = b"Content-Type: text/html\r\n\r\n<p>Hi&amp;<script>x</script>there</p>"
    assert body_text(html_only) == "Hi&there"
    assert [a.data for a in attachments(both)] == [b"\x00\x01"]


@pytest.mark.parametrize(
    "junk",
    [b"", b"\r\n\r\n", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n", b"\xff" * 50],
)
def test_render_never_raises(junk: bytes) -> None:
    assert isinstance(render(junk), str)


def test_strip_bcc_keeps_everything_else() -> None:
    msg = compose(from_="a@x.test", to=["b@x.test"], bcc=["c@x.test", "Long Name <d@x.test>"],
                  subject="s", text="Bcc: in the body stays")  # fmt: skip
    out = strip_bcc(msg)
    assert b"\r\nBcc:" not in out.split(b"\r\n\r\n")[0] and b"Bcc: in the body stays" in out
    assert out.replace(b"\r\n", b"") in msg.replace(b"\r\n", b"") or len(out) < len(msg)
