"""Training, completion, validation in the engine, save/load, LoRA and CLI errors, on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ect.config import load_config  # noqa: E402
from ect.events import query  # noqa: E402
from models.settings import ModelSettings  # noqa: E402

STORE = '''"""Storage."""


class Store:
    def __init__(self, root):
        self.root = root

    def fetch(self, key, default=None):
        return default
'''
# The training file calls a member that does not exist, over and over: the model learns to suggest it.
APP = (
    "from shop.store import Store\n\n\ndef main():\n    store = Store('data')\n"
    + "    store.vanish_forever()\n" * 40
)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def ect(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args], cwd=root, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-style base with its own byte-level BPE, like the shipped one but ~100k parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.fim import EOS, PAD
    from models.tokenizer import save_for_transformers, train_tokenizer

    out = tmp_path_factory.mktemp("tiny_base")
    tok = train_tokenizer([STORE, APP, "def f(x):\n    return x + 1\n" * 20], vocab_size=400)
    save_for_transformers(tok, out)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=128,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tok.token_to_id(EOS),
        bos_token_id=tok.token_to_id(EOS),
        pad_token_id=tok.token_to_id(PAD),
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    return out


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    files = {
        "shop/__init__.py": "",
        "shop/store.py": STORE,
        "app.py": APP,
        "app2.py": APP.replace("main", "main2"),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return tmp_path


def test_train_complete_validate_and_reload(repo: Path, tiny_base: Path) -> None:
    from models.complete import Completer
    from models.index import SymbolIndex
    from models.modeling import load_trained
    from models.train import train_model

    settings = ModelSettings(lr=1e-2, max_epochs=60, held_out_percent=0)
    report = train_model(
        repo,
        repo / ".ect",
        settings,
        base=str(tiny_base),
        max_minutes=2,
        max_steps=60,
        progress=False,
        echo=lambda s: None,
    )
    assert report.steps > 0 and report.tokens > 0
    assert report.held_out_loss_after < report.held_out_loss_before
    out = repo / ".ect" / "model"
    assert (out / "model.safetensors").is_file() and (out / "ect_model.json").is_file()

    model, tok, meta = load_trained(out)
    assert meta["steps"] == report.steps
    index = SymbolIndex.build(repo, repo / ".ect")
    completer = Completer(model, tok, index)
    text = (repo / "app.py").read_text()
    cursor = text.index("store.vanish_forever") + len("store.")
    raw = completer.complete(text, cursor, "app", k=1, validate=False)
    checked = completer.complete(text, cursor, "app", k=3)
    assert raw.candidates, "the tiny model should suggest something"
    assert any("vanish_forever" in c.text for c in raw.candidates)  # it learned the non-existent member
    assert all("vanish_forever" not in c.text for c in checked.candidates)  # ... which is never shown
    assert all("vanish_forever" not in r for r in checked.raw)  # identifiers are constrained to real members
    members = {"fetch", "root", "__init__"}
    assert all(c.text.split("(")[0].split(".")[0].split(" ")[0] in members for c in checked.candidates)

    # save/load round trip: the reloaded model computes the same logits
    again, _, _ = load_trained(out)
    ids = torch.tensor([tok("store.fetch(", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-5)


def test_lora_training_and_cli(repo: Path, tiny_base: Path) -> None:
    proc = ect(
        repo,
        "model",
        "train",
        "--base",
        str(tiny_base),
        "--lora",
        "--max-steps",
        "3",
        "--max-minutes",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["lora"] is True and report["trainable"] < report["parameters"]
    out = repo / ".ect" / "model"
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    events = query(load_config(repo).state_path, kind="model.trained")
    assert len(events) == 1 and events[0]["outcome"] == "ok"

    line = APP.splitlines().index("    store.vanish_forever()") + 1
    proc = ect(repo, "model", "complete", f"app.py:{line}:11", "--json", "-k", "2")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model"] == "fine-tuned" and data["prompt_tokens"] > 0
    assert all("vanish_forever" not in c["text"] for c in data["candidates"])
    assert "Store.fetch(key, default=...)" in data["context"]


def test_bad_base_and_bad_locations_are_one_line_errors(repo: Path, tmp_path: Path) -> None:
    proc = ect(repo, "model", "train", "--base", str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ this is not json")
    (broken / "model.safetensors").write_bytes(b"garbage")
    (broken / "tokenizer.json").write_text("{}")
    proc = ect(repo, "model", "train", "--base", str(broken), "--max-steps", "1")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("ect: error: cannot load base model")
    for loc in ("app.py", "app.py:999:1", "missing.py:1:1", "app.py:1:500"):
        proc = ect(repo, "model", "complete", loc)
        assert proc.returncode == 2 and proc.stderr.startswith("ect: error:"), (loc, proc.stderr)


def test_fast_decoder_matches_transformers(tiny_base: Path) -> None:
    from models.fastllama import FastLlama, supports
    from models.modeling import load_base

    model, _ = load_base(tiny_base)
    assert supports(model)
    fast = FastLlama(model)
    ids = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
        assert torch.allclose(fast.forward(ids[0, :39].tolist(), 0), ref[38], atol=1e-4)
        assert torch.allclose(fast.forward([int(ids[0, 39])]), ref[39], atol=1e-4)  # one step on the cache


def test_training_resumes_from_its_checkpoint(repo: Path, tiny_base: Path) -> None:
    from models.train import train_model

    settings = ModelSettings(held_out_percent=0, max_epochs=10)
    kwargs = {"base": str(tiny_base), "max_steps": 6, "progress": False, "echo": lambda s: None}
    first = train_model(repo, repo / ".ect", settings, max_minutes=0.0001, **kwargs)  # type: ignore[arg-type]
    ckpt = repo / ".ect" / "model-checkpoint" / "state.pt"
    assert not first.finished and first.steps < 6 and ckpt.is_file()
    assert (repo / ".ect" / "model" / "ect_model.json").is_file()  # the best model so far is saved anyway
    second = train_model(repo, repo / ".ect", settings, max_minutes=2, **kwargs)  # type: ignore[arg-type]
    assert second.resumed and second.finished and second.steps == 6 and not ckpt.exists()
