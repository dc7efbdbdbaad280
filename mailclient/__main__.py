"""
C{python -m mailclient}: the command-line tool.
"""

from mailclient._cli import main

if __name__ == "__main__":
    main()
