"""``python -m app`` is the ``surge`` console script."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
