"""`python -m ect` entry point."""

from ect.cli import main

if __name__ == "__main__":
    main()
