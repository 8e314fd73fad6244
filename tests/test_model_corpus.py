"""Corpus, secret scrubbing, FIM examples, retrieval and validation (no torch needed)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from ect.models.corpus import build_corpus, is_held_out, rehearsal_examples, training_examples
from ect.models.evaluate import static_suggestion
from ect.models.fim import (
    CTX,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    call_spans,
    compact_signature,
    examples_from_file,
)
from ect.models.index import Param, SymbolIndex
from ect.models.prior import NamePrior, PriorWeights
from ect.models.retrieval import context_lines
from ect.models.secrets import MASK, scrub
from ect.models.validate import Validator, adjacent_atoms

AWS_KEY = "AKIAQWERTYUIOPASDFGH"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7Fq3\n-----END RSA PRIVATE KEY-----"
PASSWORD = "Tr0ub4dor&3xyz"

STORE = '''"""Storage."""


class Store:
    def __init__(self, root):
        self.root = root

    def fetch(self, key, default=None):
        return default

    def save(self, key, value):
        return None


def open_store(root) -> "Store":
    return Store(root)
'''
APP = f'''from shop.store import Store, open_store

AWS_ACCESS_KEY_ID = "{AWS_KEY}"
db_password = "{PASSWORD}"
PEM = """{PRIVATE_KEY}"""


def main():
    store = open_store("data")
    value = store.fetch("a")
    store.save("b", value)
    return store
'''


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    files = {"shop/__init__.py": "", "shop/store.py": STORE, "app.py": APP, "untracked_dir/x.py": "y = 1\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "copy.py").write_text(STORE)  # a duplicate of shop/store.py
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "shop", "app.py", "copy.py")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return tmp_path


def test_scrub_masks_planted_secrets() -> None:
    text, n = scrub(APP)
    assert n == 3
    for secret in (AWS_KEY, PASSWORD, "MIIEowIBAAKCAQEAx7Fq3"):
        assert secret not in text
    assert text.count(MASK) == 3
    assert scrub("token_type = 'bearer'\nauthor = 'Someone Nice'\n")[1] == 0  # no false positives
    assert scrub('sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"')[1] == 1


def test_corpus_is_scrubbed_deduplicated_and_split(repo: Path) -> None:
    corpus = build_corpus(repo, held_out_percent=0)
    paths = sorted(f.path for f in corpus.train)
    assert paths == ["app.py", "copy.py"]  # the empty __init__.py is skipped
    assert corpus.duplicates == 1  # shop/store.py has the same content as copy.py
    assert corpus.masked == 3
    index = SymbolIndex.build(repo)
    examples = training_examples(corpus, index, seed=1)
    blob = "\n".join(examples)
    for secret in (AWS_KEY, PASSWORD, "MIIEowIBAAKCAQEAx7Fq3"):
        assert secret not in blob
    assert any(FIM_MIDDLE in e for e in examples) and any(FIM_MIDDLE not in e for e in examples)
    assert all(is_held_out(p, 50) == is_held_out(p, 50) for p in paths)  # deterministic
    split = build_corpus(repo, held_out_percent=50)
    assert split.held_out and split.train
    assert {f.path for f in split.held_out} == {
        f.path for f in build_corpus(repo, held_out_percent=50).held_out
    }


def test_fim_examples_have_prefix_suffix_middle_and_context() -> None:
    rng = random.Random(0)
    ex = examples_from_file(STORE * 3, rng, n_fim=20)
    fims = [e for e in ex if FIM_MIDDLE in e]
    assert len(fims) >= 15
    for e in fims:
        assert e.startswith(CTX) and e.index(FIM_PREFIX) < e.index(FIM_SUFFIX) < e.index(FIM_MIDDLE)
    params = [
        Param("key", "positional", False),
        Param("default", "positional", True),
        Param("kw", "keyword_only", True),
    ]
    assert compact_signature("fetch", params, owner="Store") == "Store.fetch(key, default=..., *, kw=...)"


def test_call_sites_are_real_calls_not_definitions_strings_or_comments() -> None:
    text = (
        "import os\n"
        "def load(path):\n"
        '    """>>> load(1)"""\n'
        '    p = os.path.join(path, "é" + x)  # save(p)\n'
        "    return self.parse(p)(1) + f().g(2)\n"
        "class Store(Base):\n"
        "    pass\n"
    )
    spans = call_spans(text)
    assert [d for _, _, d in spans] == ["os.path.join", "self.parse", "f"]
    start, end, _ = spans[0]
    assert text[start:end] == 'join(path, "é" + x)  # save(p)'  # columns past a non-ASCII character
    assert text[spans[1][0] :].startswith("parse(p)(1)")
    # text that does not parse still yields its calls, but not its definitions
    broken = "def load(path:\n    return store.get(path\n"
    assert [d for _, _, d in call_spans(broken)] == ["store.get"]


def test_keystroke_replay_at_word_starts_and_while_typing() -> None:
    from ect.models.corpus import SourceFile
    from ect.models.evaluate import keystroke_savings

    line = "value = compute_total(items)"
    f = SourceFile("app.py", "app", f"def f(items):\n    {line}\n")
    asked: list[str] = []

    def suggest(text: str, cursor: int, module: str) -> tuple[list[str], list[str], float]:
        prefix = text[text.rfind("\n", 0, cursor) + 1 : cursor].strip()
        asked.append(prefix)
        shown = {"value =": ["compute_sum("], "value = compute_t": ["otal(items)"]}.get(prefix, [])
        return shown, shown, 1.0

    words = keystroke_savings(suggest, [f], max_lines=10, seed=0)
    assert words["accepted"] == 0 and words["keystroke_savings"] == 0.0  # the word-start guess is wrong
    assert "value = compute_t" not in asked  # not a word start
    asked.clear()
    lines: list[tuple[int, int]] = []
    typing = keystroke_savings(suggest, [f], max_lines=10, seed=0, every_keystroke=True, per_line=lines)
    assert typing["accepted"] == 1
    assert sorted(lines) == [(0, len("def f(items):")), (len("otal(items)") - 1, len(line))]  # for pairing
    assert typing["keystroke_savings"] == round((len("otal(items)") - 1) / words["chars"], 4)
    # the wrong ghost text stays shown while "compute_" is typed, so nothing is asked in between
    assert "value = comp" not in asked and "value = compute_t" in asked


def test_retrieval_finds_receiver_members_and_imports(repo: Path) -> None:
    index = SymbolIndex.build(repo)
    text = (repo / "app.py").read_text()
    cursor = text.index("store.save") + len("store.")
    lines = context_lines(index, "app", text, cursor)
    assert "Store.save(key, value)" in lines and "Store.fetch(key, default=...)" in lines
    cursor = text.index("store = open_store") + len("store = ")
    assert "open_store(root)" in context_lines(index, "app", text, cursor)


def test_retrieval_lists_only_names_the_cursor_can_use(repo: Path) -> None:
    index = SymbolIndex.build(repo)
    filler = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(80))  # > 1,500 characters
    text = f"from shop.store import Store, open_store\n\n{filler}def run():\n    s = open_store(1)\n    "
    cursor = len(text)
    # before a word: the imported names used nearby, not every import of the file
    assert context_lines(index, "app", text, cursor) == ["open_store(root)"]
    # while a word is typed: only the names it can become, used nearby or not
    assert context_lines(index, "app", text + "Sto", cursor + 3) == ["class Store(root)"]
    assert context_lines(index, "app", text + "xyz", cursor + 3) == []


def test_name_prior_counts_the_live_file_and_the_rest_of_the_repository(repo: Path) -> None:
    index = SymbolIndex.build(repo)
    # copy.py (a duplicate of shop/store.py, deduplicated only in the corpus) and shop/store.py say "fetch"
    # once each, app.py once; from app's point of view the other files hold 2 references
    assert index.references_elsewhere("fetch", "app") == 2
    text = (repo / "app.py").read_text().replace('    store.save("b", value)\n', "    store.\n")
    cursor = text.index("    store.\n") + len("    store.")
    prior = NamePrior(index, "app", text, cursor)
    assert prior.in_file["fetch"] == 1 and prior.in_file.get("save", 0) == 0
    # the line being typed is not evidence
    edited = text.replace("    store.\n", "    store.save(store.save)\n")
    assert NamePrior(index, "app", edited, cursor).in_file.get("save", 0) == 0
    # only members of the receiver at the cursor count: `other.save` is no evidence for `store.save`
    scoped = text.replace("    store.\n", "    other.save()\n    store.fetch()\n    store.\n")
    at = scoped.index("    store.\n") + len("    store.")
    assert NamePrior(index, "app", scoped, at).in_file == {"fetch": 2}
    at = scoped.index("    store.fetch()\n") + len("    store.fetch()")  # no receiver: every word counts
    assert NamePrior(index, "app", scoped, at).in_file["save"] == 1
    w = PriorWeights(weight=1.0, elsewhere_weight=0.5)
    assert prior.log_count("fetch", w) == pytest.approx(math.log(1 + 1 + 0.5 * 2))
    assert prior.score("fetch", -3.0, w) > prior.score("save", -3.0, w)  # equal model scores: counts decide
    assert prior.score("save", -1.0, w) > prior.score("fetch", -3.0, w)  # ... which the model can overrule


def test_garbled_suggestions_are_not_shown(repo: Path) -> None:
    index = SymbolIndex.build(repo)
    text = (repo / "app.py").read_text()
    cursor = text.index("store.save") + len("store.")
    v = Validator(index, "app", text, cursor)
    assert v.check('save("b", value) if value else None').ok
    assert not v.check("fetch(key, default=..........vanish())").ok  # `... ...`: no completion fixes it
    assert not v.check("fetch(a) b").ok and not v.check("fetch(a b)").ok
    for fine in ('fetch(f"{value!r} x")', 'fetch("a" "b")', "fetch(0x1f)", "fetch(not value)"):
        assert v.check(fine).ok, fine
    prose = text.replace("def main():\n", 'def main():\n    """Open the store\n    and read it\n    """\n')
    at = prose.index("and read") + len("and ")
    assert Validator(index, "app", prose, at).check("write it twice").ok  # docstring prose is not code
    assert adjacent_atoms("match point:", 0) is None and adjacent_atoms("x = a if b else c", 0) is None


def test_rehearsal_examples_are_general_python_of_the_asked_size() -> None:
    first = rehearsal_examples(20_000, seed=3)
    assert first == rehearsal_examples(20_000, seed=3)  # deterministic per seed
    assert first != rehearsal_examples(20_000, seed=4)
    size = sum(len(e) for e in first)
    assert 20_000 <= size < 20_000 + 60_000  # stops once the target is reached (one file may overshoot)
    assert any(FIM_MIDDLE in e for e in first) and any(FIM_MIDDLE not in e for e in first)
    assert rehearsal_examples(0, seed=3) == []


def test_model_settings_reject_bad_values(tmp_path: Path) -> None:
    from ect.models.settings import model_settings

    from ect.config import load_config
    from ect.errors import ConfigError

    for setting, error in [
        ("min_token_prob = 1.5", "min_token_prob"),
        ("prefix_tokens = 1000", "at most 1000"),
        ("rehearsal = -1", "rehearsal"),
        ("fine_tune_weight = 0", "fine_tune_weight"),
        ("call_sites_per_api = 0", "call_sites_per_api"),
    ]:
        (tmp_path / "ect.toml").write_text(f"[model]\n{setting}\n")
        with pytest.raises(ConfigError, match=error):
            model_settings(load_config(tmp_path))
    (tmp_path / "ect.toml").write_text("[model]\nmin_token_prob = 0.25\nprefix_tokens = 128\n")
    settings = model_settings(load_config(tmp_path))
    assert settings.min_token_prob == 0.25 and settings.prefix_tokens == 128


def test_the_calls_recipe_takes_at_most_call_sites_per_api_sites_of_each_callable(tmp_path: Path) -> None:
    from ect.models.corpus import api_examples

    (tmp_path / "lib.py").write_text("def fetch(key):\n    return key\n\n\ndef rare(x):\n    return x\n")
    calls = "".join(f"\n\ndef use{i}():\n    return fetch({i})\n" for i in range(12))
    once = "\n\ndef once():\n    rare(1)\n"
    (tmp_path / "app.py").write_text("from lib import fetch, rare\n" + calls + once)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "lib.py", "app.py")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    index = SymbolIndex.build(tmp_path)
    corpus = build_corpus(tmp_path, held_out_percent=0)

    def middles(per_api: int) -> list[str]:
        out = api_examples(corpus, index, seed=1, per_api=per_api, line_fraction=0)
        return [e.split(FIM_MIDDLE, 1)[1] for e in out]

    for per_api, fetched in [(2, 2), (8, 8), (100, 12)]:
        got = middles(per_api)
        assert sum(m.startswith("fetch(") for m in got) == fetched  # a frequent callable: capped
        assert sum(m.startswith("rare(") for m in got) == 1  # a rare one keeps its only site
    assert len(set(middles(8))) == 9  # distinct sites, not one site repeated


def test_validation_drops_or_repairs_hallucinated_internal_symbols(repo: Path) -> None:
    index = SymbolIndex.build(repo)
    text = (repo / "app.py").read_text()
    cursor = text.index("store.save") + len("store.")
    v = Validator(index, "app", text, cursor)
    assert v.check('save("b", value)').ok
    bad = v.check("delete_everything()")  # no such member, nothing close: dropped
    assert not bad.ok and "has no attribute 'delete_everything'" in bad.problems[0]
    typo = v.check('fetc("a")')  # repaired to the closest member
    assert typo.ok and typo.text == 'fetch("a")'
    arity = v.check('save("b", 1, 2, 3)')
    assert not arity.ok and "positional" in arity.problems[0]
    assert not v.check('fetch(kye="a")').ok
    assert v.check('fetch("a", *rest)').ok  # splats cannot be judged
    line_start = text.index("    value = store.fetch")
    v2 = Validator(index, "app", text, line_start + 4)
    assert not v2.check("value = totally_made_up_helper(store)").ok
    assert v2.check("value = len(store.root)").ok


def test_static_baseline_writes_calls_the_validator_accepts(tmp_path: Path) -> None:
    (tmp_path / "nodes.py").write_text("def make_node(kind, *, end, flag=False):\n    return kind\n")
    text = "from nodes import make_node\n\n\ndef run():\n    return make_"
    (tmp_path / "app.py").write_text(text)
    index = SymbolIndex.build(tmp_path)
    got = static_suggestion(index, "app", text, len(text))
    assert got == "node(kind, end=end)"  # required keyword-only arguments too, not only positional ones
    assert Validator(index, "app", text, len(text)).problems(got) == []


def test_model_modules_import_without_torch() -> None:
    code = (
        "import sys, ect.cli, ect.models.cli, ect.models.index, ect.models.validate, "
        "ect.models.retrieval, ect.models.corpus, ect.models.settings, ect.models.fim, ect.models.secrets\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'tokenizers') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
