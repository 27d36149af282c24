"""correo: a complete Internet mail system in one Python package."""

__version__ = "0.1.0"


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), else ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("correo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return __version__
