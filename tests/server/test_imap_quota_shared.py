"""GETQUOTAROOT and GETQUOTA through a shared mailbox (RFC 9208 §4.1-§4.2, RFC 4314).

A COPY into another account's mailbox is charged to that account, so its quota root is
what the user sees there; without a right on the mailbox it must look missing.
"""

from __future__ import annotations

from tests.conftest import Server, correo
from tests.server.imap_helpers import unique
from tests.server.test_imap_acl_rights import _append, _login, _user


def test_quota_of_a_shared_mailbox_is_its_owners(server: Server) -> None:
    owner, guest, stranger = (_user(server, p) for p in ("sqo", "sqg", "sqs"))
    assert correo(server.data, "user", "quota", owner, "none", "--messages", "7").returncode == 0
    alice, bob, eve = (_login(server, u) for u in (owner, guest, stranger))
    team = unique("team")
    alice.cmd("c", f"CREATE {team}")
    alice.cmd("s", f'SETACL {team} "{guest}" lr')
    for n in range(3):
        assert _append(alice, team, f"m{n}").startswith(b"a OK")
    shared = f"Other Users/{owner}/{team}"
    root = f"Other Users/{owner}"
    out = bob.cmd("q", f'GETQUOTAROOT "{shared}"')
    assert out == [
        f'* QUOTAROOT "{shared}" "{root}"'.encode(),
        f'* QUOTA "{root}" (MESSAGE 3 7)'.encode(),
        b"q OK GETQUOTAROOT completed",
    ], out
    out = bob.cmd("g", f'GETQUOTA "{root}"')
    assert out[0] == f'* QUOTA "{root}" (MESSAGE 3 7)'.encode(), out
    assert out[-1] == b"g OK GETQUOTA completed"
    # the guest's own root stays its own
    assert bob.cmd("o", 'GETQUOTA ""')[-1] == b"o OK GETQUOTA completed"
    # no right on any of the owner's mailboxes: neither the mailbox nor the root exists
    out = eve.cmd("q", f'GETQUOTAROOT "{shared}"')
    assert out == [b"q NO [NONEXISTENT] No such mailbox"], out
    assert eve.cmd("g", f'GETQUOTA "{root}"') == [b"g NO [NONEXISTENT] No such quota root"]
    assert bob.cmd("n", 'GETQUOTA "Other Users/nobody@example.test"')[-1].startswith(
        b"n NO [NONEXISTENT]"
    )
    # the right taken away: the root goes with it
    alice.cmd("d", f'DELETEACL {team} "{guest}"')
    assert bob.cmd("g2", f'GETQUOTA "{root}"') == [b"g2 NO [NONEXISTENT] No such quota root"]
    for raw in (alice, bob, eve):
        raw.close()
