"""`python -m wsserver` and the PyInstaller entry point: hands over to :func:`wsserver.cli.main`."""

from wsserver.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
