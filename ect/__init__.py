"""ect: a fast Edit-Compile-Test loop for Python teams."""

__version__ = "0.1.0"
