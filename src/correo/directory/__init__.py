"""correo.directory: accounts, domains, aliases, password hashes and DKIM keys.

The CLI writes it, the servers read it.  ``api.py`` is the interface; ``sqlite.py``
keeps it in the data folder (one node), ``postgres.py`` in the database every node of a
cluster shares; ``factory.py`` opens the one ``correo.toml`` names.
"""

from correo.directory.addresses import AddressError, AddressNormalizer, ParsedAddress
from correo.directory.api import (
    Directory,
    DirectoryError,
    LoginCounter,
    LoginCounters,
    Resolution,
)
from correo.directory.passwords import PasswordError, PasswordScheme
from correo.directory.sqlite import SqliteDirectory

__all__ = [
    "AddressError",
    "AddressNormalizer",
    "Directory",
    "DirectoryError",
    "LoginCounter",
    "LoginCounters",
    "ParsedAddress",
    "PasswordError",
    "PasswordScheme",
    "Resolution",
    "SqliteDirectory",
]
