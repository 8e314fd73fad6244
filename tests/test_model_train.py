"""Training, completion, validation in the engine, save/load, LoRA and CLI errors, on a tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ect.models.settings import ModelSettings  # noqa: E402
from ect_testutil import make_tiny_base  # noqa: E402

from ect.config import load_config  # noqa: E402
from ect.events import query  # noqa: E402

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
    return make_tiny_base(tmp_path_factory.mktemp("tiny_base"), [STORE, APP])


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
    from ect.models.complete import Completer
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_trained
    from ect.models.train import train_model

    settings = ModelSettings(lr=1e-2, max_epochs=90, held_out_percent=0, recipe="mixed")
    report = train_model(
        repo,
        repo / ".ect",
        settings,
        base=str(tiny_base),
        max_minutes=2,
        max_steps=90,
        progress=False,
        echo=lambda s: None,
    )
    assert report.steps > 0 and report.tokens > 0
    assert report.held_out_loss_after < report.held_out_loss_before
    assert report.fine_tune_weight == 0.7  # the saved model blends the best checkpoint with the base
    assert report.held_out_loss_checkpoint <= report.held_out_loss_before
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
    assert all("vanish_forever" not in c.text for c in checked.candidates), checked  # never shown
    # a word being typed is written again from its start (token healing); the typed part is not repeated
    cursor = text.index("    store.vanish_forever") + len("    sto")
    healed = completer.complete(text, cursor, "app", k=1, validate=False)
    assert healed.candidates and healed.candidates[0].text.startswith("re"), healed
    members = {"fetch", "root", "__init__"}
    # the name after `store.` is constrained to real members, even before validation
    assert checked.raw and all(re.match(r"\w*", r).group(0) in members for r in checked.raw)  # type: ignore[union-attr]
    assert all(re.match(r"\w*", c.text).group(0) in members for c in checked.candidates)  # type: ignore[union-attr]

    # save/load round trip: the reloaded model computes the same logits
    again, _, _ = load_trained(out)
    ids = torch.tensor([tok("store.fetch(", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-5)


def test_blend_with_base_keeps_part_of_the_update(tiny_base: Path) -> None:
    from ect.models.modeling import load_base
    from ect.models.train import _apply_lora, blend_with_base

    base, _ = load_base(tiny_base)
    tuned, _ = load_base(tiny_base)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(1.0)
    blend_with_base(tuned, tiny_base, 0.25, lora=False)
    for (name, b), (_, p) in zip(base.named_parameters(), tuned.named_parameters(), strict=True):
        assert torch.allclose(p, b + 0.25), name

    adapted = _apply_lora(load_base(tiny_base)[0])
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.fill_(2.0)
    blend_with_base(adapted, tiny_base, 0.5, lora=True)
    scaled = [p for name, p in adapted.named_parameters() if "lora_B" in name]
    assert scaled and all(torch.all(p == 1.0) for p in scaled)


def test_lora_training_and_cli(repo: Path, tiny_base: Path) -> None:
    (repo / "ect.toml").write_text("[model]\nrehearsal = 0.5\n")  # general Python mixed in
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
    assert report["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    assert report["rehearsal"] == 0.5
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_one_line_error(repo: Path, tiny_base: Path) -> None:
    proc = ect(repo, "model", "train", "--base", str(tiny_base), "--device", "cuda", "--max-steps", "1")
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "ect: error: --device cuda: no CUDA device is available"
    )
    assert not (repo / ".ect" / "model").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run it on a GPU machine)")
def test_a_model_trained_on_cuda_completes_on_the_cpu(repo: Path, tiny_base: Path) -> None:
    """The team-model path: train where the GPU is, use the model on a developer's CPU."""
    from ect.models.complete import Completer
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_trained

    (repo / "ect.toml").write_text(
        '[model]\nlr = 0.01\nmax_epochs = 90\nheld_out_percent = 0\nrecipe = "mixed"\n'
    )
    proc = ect(
        repo, "model", "train", "--base", str(tiny_base), "--device", "cuda", "--max-steps", "90", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["device"] == "cuda" and report["steps"] == 90
    assert report["held_out_loss_after"] < report["held_out_loss_before"]
    model, tok, meta = load_trained(repo / ".ect" / "model")  # on the CPU
    assert meta["device"] == "cuda" and {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    completer = Completer(model, tok, SymbolIndex.build(repo, repo / ".ect"))
    text = (repo / "app.py").read_text()
    cursor = text.index("store.vanish_forever") + len("store.")
    raw = completer.complete(text, cursor, "app", k=1, validate=False)
    assert any("vanish_forever" in c.text for c in raw.candidates), raw  # it learned the repository
    assert all(
        "vanish_forever" not in c.text for c in completer.complete(text, cursor, "app", k=3).candidates
    )


def test_fast_decoder_matches_transformers(tiny_base: Path) -> None:
    from ect.models.fastllama import FastLlama, supports
    from ect.models.modeling import load_base

    model, _ = load_base(tiny_base)
    assert supports(model)
    ids = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
        exact = FastLlama(model, precision="fp32")
        assert torch.allclose(exact.forward(ids[0, :39].tolist(), 0), ref[38], atol=1e-4)
        assert torch.allclose(exact.forward([int(ids[0, 39])]), ref[39], atol=1e-4)  # one step on the cache
        # low precision (bfloat16 prompts, int8 single tokens) stays close to the exact numbers
        low = FastLlama(model, precision="auto")
        assert (low.forward(ids[0, :39].tolist(), 0) - ref[38]).abs().max() < 0.05
        assert (low.forward([int(ids[0, 39])]) - ref[39]).abs().max() < 0.05
        # a token tree after a cached prefix: every node sees the prefix and its own ancestors only
        exact.forward(ids[0, :30].tolist(), 0)
        a, b, c = (int(x) for x in ids[0, 30:33])
        other = (a + 1) % model.config.vocab_size
        tree = exact.tree_logprobs(30, [a, b, other, c], [-1, 0, -1, 1])
        assert exact.pos == 30  # the cache is left as it was
        assert torch.allclose(tree[0], ref[30], atol=1e-4)
        assert torch.allclose(tree[1], ref[31], atol=1e-4)
        assert torch.allclose(tree[3], ref[32], atol=1e-4)
        branch = torch.cat([ids[0, :30], torch.tensor([other])])[None]
        want = torch.log_softmax(model(input_ids=branch).logits[0, -1], -1)
        assert torch.allclose(tree[2], want, atol=1e-4)


def test_members_are_ranked_as_whole_names(repo: Path, tiny_base: Path) -> None:
    from ect.models.complete import Completer
    from ect.models.fim import CTX
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_base

    model, tok = load_base(tiny_base)
    index = SymbolIndex.build(repo, repo / ".ect")
    completer = Completer(model, tok, index, precision="fp32", prior=None)
    text = (repo / "app.py").read_text()
    cursor = text.index("store.vanish_forever") + len("store.")
    typed, names = completer.member_names(text, cursor, "app") or ("", [])
    assert typed == "" and set(names) == {"fetch", "root"}  # dunders are not offered after a bare dot
    prompt = completer.prompt_ids(text, cursor, [])
    assert prompt[0] == tok.convert_tokens_to_ids(CTX)
    with torch.no_grad():
        first = completer.fast.forward(prompt, 0)
        ranked = completer.rank_members(prompt, first, names)
        scores = [s for s, _, _ in ranked]
        assert scores == sorted(scores, reverse=True) and {n for _, n, _ in ranked} == set(names)
        terminal = completer._terminal_mask()
        for score, name, ids in ranked:  # the tree's score is the chain rule over the plain decoder
            seq = torch.tensor([prompt + ids])
            lp = torch.log_softmax(model(input_ids=seq).logits[0].float(), dim=-1)
            want = sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(ids))
            want += float(torch.logsumexp(lp[-1][terminal], dim=0))
            assert abs(score - want) < 1e-3, (name, score, want)
        shown = completer.complete(text, cursor, "app", k=2)
        # each suggestion is a real member, whole (the token after it cannot extend the name)
        heads = [re.match(r"\w*", c.text).group(0) for c in shown.candidates]  # type: ignore[union-attr]
        assert heads and heads[0] == ranked[0][1] and all(h in names for h in heads)


def test_a_fine_tuned_model_ranks_members_without_the_signature_list(repo: Path, tiny_base: Path) -> None:
    from ect.models.complete import Completer
    from ect.models.index import SymbolIndex
    from ect.models.modeling import load_base

    model, tok = load_base(tiny_base)
    index = SymbolIndex.build(repo, repo / ".ect")
    text = (repo / "app.py").read_text()
    cursor = text.index("store.vanish_forever") + len("store.")
    listed = Completer(model, tok, index, precision="fp32")
    bare = Completer(model, tok, index, precision="fp32", member_list=False)
    with_list = listed.complete(text, cursor, "app")
    without = bare.complete(text, cursor, "app")
    assert with_list.context and without.context  # retrieval still finds the signatures
    assert with_list.prompt_tokens > without.prompt_tokens == len(bare.prompt_ids(text, cursor, []))
    heads = [re.match(r"\w*", c.text).group(0) for c in without.candidates]  # type: ignore[union-attr]
    assert heads and all(h in {"fetch", "root"} for h in heads)  # still real members only


def test_min_token_prob_shortens_doubtful_suggestions(repo: Path, tiny_base: Path) -> None:
    from ect.models.complete import Completer
    from ect.models.modeling import load_base

    model, tok = load_base(tiny_base)
    text = (repo / "app.py").read_text()
    cursor = text.index("    store = Store") + 4
    plain = Completer(model, tok, None, ModelSettings(max_new_tokens=12, min_token_prob=0.0))
    full = plain.complete(text, cursor, validate=False)
    sure = Completer(model, tok, None, ModelSettings(max_new_tokens=12, min_token_prob=0.99)).complete(
        text, cursor, validate=False
    )
    assert full.candidates and sure.candidates
    assert full.candidates[0].text.startswith(sure.candidates[0].text)
    assert len(sure.candidates[0].text) < len(full.candidates[0].text)  # an untrained model is never sure


def test_training_resumes_from_its_checkpoint(repo: Path, tiny_base: Path) -> None:
    from ect.models.train import train_model

    settings = ModelSettings(held_out_percent=0, max_epochs=10)
    kwargs = {"base": str(tiny_base), "max_steps": 6, "progress": False, "echo": lambda s: None}
    first = train_model(repo, repo / ".ect", settings, max_minutes=0.0001, **kwargs)  # type: ignore[arg-type]
    ckpt = repo / ".ect" / "model-checkpoint" / "state.pt"
    assert not first.finished and first.steps < 6 and ckpt.is_file()
    assert (repo / ".ect" / "model" / "ect_model.json").is_file()  # the best model so far is saved anyway
    second = train_model(repo, repo / ".ect", settings, max_minutes=2, **kwargs)  # type: ignore[arg-type]
    assert second.resumed and second.finished and second.steps == 6
    assert ckpt.exists()  # kept (marked done): a run after the next commit refreshes from it
