"""Loading and saving checkpoints: any local Hugging Face causal LM as base, the shipped default base,
and the fine-tuned model in `.ect/model/` (full weights or a LoRA adapter)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ect.models.fim import EOS, PAD, SPECIAL_TOKENS

from ect.errors import EctError

DEFAULT_BASE = Path(__file__).resolve().parent / "default_base"
META_FILE = "ect_model.json"


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    except Exception:  # pragma: no cover - logging knobs differ across versions
        pass


def check_base_dir(path: Path) -> None:
    """One-line EctError unless `path` looks like a local checkpoint directory."""
    if not path.exists():
        raise EctError(f"base model directory '{path}' does not exist")
    if not path.is_dir():
        raise EctError(f"base model '{path}' is not a directory")
    if not (path / "config.json").is_file():
        raise EctError(f"base model directory '{path}' has no config.json (not a Hugging Face checkpoint)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise EctError(f"base model directory '{path}' has no weights (*.safetensors)")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise EctError(f"base model directory '{path}' has no tokenizer")


def load_base(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from a local checkpoint, with the FIM sentinels added when missing."""
    import torch

    _quiet()
    check_base_dir(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EctError(f"cannot load base model from '{path}': {first[:200]}") from None
    missing = [t for t in SPECIAL_TOKENS if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing})
        model.resize_token_embeddings(len(tok))
    if tok.pad_token is None:
        tok.pad_token = PAD if PAD not in missing else tok.eos_token
    if tok.eos_token is None:
        tok.eos_token = EOS
    model.to(device)  # type: ignore[arg-type]
    return model, tok


def resolve_base(base: str | None, root: Path) -> Path:
    """`--base` or `[tool.ect.model] base` (relative to the repo), else the shipped default base."""
    if not base:
        return DEFAULT_BASE
    p = Path(base).expanduser()
    return p if p.is_absolute() else (root / p)


def save_model(model: Any, tok: Any, out: Path, meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / META_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def base_of(meta: dict[str, Any]) -> Path:
    """The base a fine-tuned model was made from; the shipped default base wherever this install is."""
    base = meta.get("base") or "default"
    if base == "default":
        return DEFAULT_BASE
    path = Path(base)
    if not path.exists() and path.name == DEFAULT_BASE.name:
        return DEFAULT_BASE  # made with the default base of another checkout or install
    return path


def load_trained(path: Path, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """The fine-tuned model in `path` (LoRA adapters merged for speed), its tokenizer and metadata."""
    import torch

    _quiet()
    if not (path / META_FILE).is_file():
        raise EctError(f"no trained model in '{path}': run 'ect model train' first")
    meta = read_meta(path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        base_path = base_of(meta)
        model, _ = load_base(base_path, device)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if len(tok) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tok))
        try:
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EctError(
                f"cannot load the LoRA adapter in '{path}': {str(exc).splitlines()[0][:200]}"
            ) from None
        return model.to(device).eval(), tok, meta
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EctError(f"cannot load the model in '{path}': {str(exc).splitlines()[0][:200]}") from None
    return model.to(device).eval(), tok, meta  # type: ignore[arg-type]
