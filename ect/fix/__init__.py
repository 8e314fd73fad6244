"""Verified fixes: turn a compile error or failing test into edits proven to make it green.

`ect.fix.engine.fix_failures` finds candidates (symbol index, config-declared moves, the code model)
and verifies each one in a scratch copy of the repository before offering it.
"""
