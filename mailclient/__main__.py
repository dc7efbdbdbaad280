"""
C{python -m mailclient}: the command-line tool.
"""

from mailclient._commands.main import main

if __name__ == "__main__":
    main()
