"""The ect language server (`ect lsp`): completions, loop diagnostics on save, verified fixes as code actions.

pygls is imported only by `ect.lsp.server`; the other modules here are plain Python so they can be tested
and benchmarked without a client.
"""
