"""``python -m hearth.cli``: the same command as ``hearth``."""

from hearth.cli.main import main

if __name__ == "__main__":
    main()
