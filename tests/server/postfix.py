"""A throwaway Postfix instance (``postfix -c DIR``) for interop tests.

Everything lives in one temporary directory (config, queue, data, log), so the tests
never touch the system's Postfix; only starting it needs root (it drops to ``postfix``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["POSTFIX", "Postfix", "needs_postfix"]

POSTFIX = shutil.which("postfix") or (
    "/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None
)

needs_postfix = [
    pytest.mark.skipif(POSTFIX is None, reason="postfix not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a Postfix instance must start as root"),
]

# inet_interfaces names a configured address (127.0.0.x other than .1 is routable on
# Linux but not listed on lo); master.cf binds the smtpd to the wanted address itself.
_MAIN = """\
compatibility_level = 3.6
config_directory = {work}/etc
queue_directory = {work}/spool
data_directory = {work}/data
maillog_file = {work}/postfix.log
maillog_file_prefixes = {work}
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_tls_security_level = none
smtputf8_enable = no
"""

# No chroot: the instance lives outside /var/spool.
_MASTER = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
lmtp unix - - n - - lmtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """``with Postfix() as pf:`` write extra files into ``pf.etc``, then ``pf.start(...)``.

    Leaving the block stops the instance and removes its directory.
    """

    def __init__(self) -> None:
        assert POSTFIX is not None, "use the needs_postfix marks"
        self.work = Path(tempfile.mkdtemp(prefix="correo-postfix-"))
        self.work.chmod(0o755)  # postfix's own processes must reach the queue
        self.etc = self.work / "etc"
        for sub in ("etc", "spool", "data"):
            (self.work / sub).mkdir(mode=0o755)
        shutil.chown(self.work / "data", "postfix", "postfix")
        self._command = [POSTFIX, "-c", str(self.etc)]
        self._started = False

    def start(self, hostname: str, listen: str, settings: str) -> None:
        """Run smtpd on ``listen`` ("host:port"); ``settings`` are extra main.cf lines."""
        main = _MAIN.format(work=self.work, hostname=hostname) + settings
        (self.etc / "main.cf").write_text(main)
        (self.etc / "master.cf").write_text(_MASTER.format(listen=listen))
        self._run("check")
        started = self._run("start")
        if started.returncode != 0:
            pytest.fail(f"postfix start failed: {started.stdout}{started.stderr}")
        self._started = True
        host, _, port = listen.rpartition(":")
        deadline = time.monotonic() + 60  # only a failed start waits that long
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("postfix did not listen:\n" + self.log()[-3000:])
                time.sleep(0.1)

    def log(self) -> str:
        path = self.work / "postfix.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        if self._started:
            self._run("stop")
            time.sleep(0.2)  # let the master remove its pid file before the rmtree
        shutil.rmtree(self.work, ignore_errors=True)

    def _run(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._command, action], capture_output=True, text=True, timeout=60, check=False
        )

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
