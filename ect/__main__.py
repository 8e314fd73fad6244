"""`python -m ect` entry point."""

from ect.entry import main

if __name__ == "__main__":
    main()
