"""correo.directory: accounts, domains, aliases and password hashes.

The CLI writes it, the servers read it; see ``sqlite.py`` for how readers see
writes without a restart.
"""

from correo.directory.addresses import AddressError, AddressNormalizer, ParsedAddress
from correo.directory.passwords import PasswordError, PasswordScheme
from correo.directory.sqlite import Directory, DirectoryError, Resolution

__all__ = [
    "AddressError",
    "AddressNormalizer",
    "Directory",
    "DirectoryError",
    "ParsedAddress",
    "PasswordError",
    "PasswordScheme",
    "Resolution",
]
