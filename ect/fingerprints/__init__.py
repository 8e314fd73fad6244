"""Per-test fingerprints: which code blocks and files each test used, and when that changed.

`blocks` cuts a module into checksummed blocks (functions/methods, plus the module-level
skeleton); `recorder` runs inside pytest and notes what each test executed and read;
`store` keeps records in SQLite; `ingest` turns a recording into records; `refine`
narrows (never widens past safety) the static selection with them.
"""
