"""A lean inference path for Llama-style checkpoints: the same arithmetic as transformers' LlamaForCausalLM
with a preallocated KV cache and none of the per-call framework overhead (which dominates single-token
decoding of a small model on a CPU). Used by the completion engine when the model qualifies.

Single-token decoding on a CPU is bound by memory bandwidth (every weight is read once per token), so
the weights are kept in low precision: `precision="auto"` multiplies prompts (many rows) with bfloat16
weights and single tokens with int8 weights (per-row scales), keeping the residual stream, norms,
attention and the KV cache in float32. `precision="fp32"` is the exact path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

PRECISIONS = ("auto", "bf16", "fp32")


def supports(model: Any) -> bool:
    """True for a plain (merged) LlamaForCausalLM with default RoPE and no biases."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", "") != "llama" or type(model).__name__ != "LlamaForCausalLM":
        return False
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    return (
        rope_type == "default"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "hidden_act", "silu") == "silu"
    )


class _Linear:
    """y = x @ W.T with the weight held in the precisions the two shapes of call want."""

    def __init__(self, weight: torch.Tensor, precision: str) -> None:
        w = weight.detach().float().contiguous()
        self.fp32: torch.Tensor | None = w if precision == "fp32" or w.device.type != "cpu" else None
        self.bf16 = w.to(torch.bfloat16) if self.fp32 is None else None
        self.int8: tuple[torch.Tensor, torch.Tensor] | None = None
        if precision == "auto" and self.fp32 is None:
            scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
            q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
            try:  # weight-only int8 kernel (CPU); fall back to bfloat16 where it is missing
                torch._weight_int8pack_mm(
                    torch.zeros(1, w.shape[1], dtype=torch.bfloat16), q, scales.bfloat16()
                )
                self.int8 = (q, scales.to(torch.bfloat16))
            except (RuntimeError, AttributeError):
                self.int8 = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp32 is not None:
            return x @ self.fp32.T
        xb = x.to(torch.bfloat16)
        if self.int8 is not None and x.shape[0] == 1:
            out: torch.Tensor = torch._weight_int8pack_mm(xb, self.int8[0], self.int8[1])
            return out.float()
        assert self.bf16 is not None
        return (xb @ self.bf16.T).float()


class FastLlama:
    """Greedy-decoding helper over a LlamaForCausalLM's weights (CPU or GPU)."""

    def __init__(self, model: Any, max_len: int = 1024, precision: str = "auto") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        rope = getattr(cfg, "rope_parameters", None) or {}
        theta = float(
            rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)) if isinstance(rope, dict) else 1e4
        )
        inner = model.model
        self.embed: torch.Tensor = inner.embed_tokens.weight.detach().float()
        self.lm_head = _Linear(model.lm_head.weight, precision)
        self.norm: torch.Tensor = inner.norm.weight.detach().float()
        self.layers: list[tuple[torch.Tensor, _Linear, _Linear, torch.Tensor, _Linear, _Linear]] = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
            gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
            self.layers.append(
                (
                    layer.input_layernorm.weight.detach().float(),
                    _Linear(qkv, precision),
                    _Linear(att.o_proj.weight, precision),
                    layer.post_attention_layernorm.weight.detach().float(),
                    _Linear(gate_up, precision),
                    _Linear(mlp.down_proj.weight, precision),
                )
            )
        self.max_len = max_len
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        dev = self.embed.device
        self.cos, self.sin = emb.cos().to(dev), emb.sin().to(dev)
        self.k = torch.zeros(self.n_layers, self.n_kv, max_len, self.hd, device=dev)
        self.v = torch.zeros_like(self.k)
        self.pos = 0

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    @staticmethod
    def _rot(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    def _run(
        self, ids: Sequence[int], positions: torch.Tensor, pos: int, mask: torch.Tensor | None, keep: bool
    ) -> torch.Tensor:
        """The final hidden states of `ids`; their keys/values go to the cache at pos.. when `keep`,
        else they are attended to only through `mask` (rows: the new tokens; columns: cache[:pos] + new)."""
        n = len(ids)
        x = self.embed[torch.tensor(list(ids), device=self.embed.device)]  # (n, d)
        cos, sin = self.cos[positions], self.sin[positions]
        nq, nkv, hd = self.n_heads, self.n_kv, self.hd
        for i, (w_in, qkv_w, o_w, w_post, gu_w, down_w) in enumerate(self.layers):
            h = self._rms(x, w_in)
            qkv = qkv_w(h)
            q = qkv[:, : nq * hd].view(n, nq, hd).transpose(0, 1)
            k = qkv[:, nq * hd : (nq + nkv) * hd].view(n, nkv, hd).transpose(0, 1)
            v = qkv[:, (nq + nkv) * hd :].view(n, nkv, hd).transpose(0, 1)
            q = q * cos + self._rot(q) * sin
            k = k * cos + self._rot(k) * sin
            if keep:
                self.k[i, :, pos : pos + n] = k
                self.v[i, :, pos : pos + n] = v
                keys, vals = self.k[i, :, : pos + n], self.v[i, :, : pos + n]
            else:
                keys = torch.cat([self.k[i, :, :pos], k], dim=1)
                vals = torch.cat([self.v[i, :, :pos], v], dim=1)
            if n == 1 and mask is None:
                att = F.scaled_dot_product_attention(q, keys, vals, enable_gqa=nkv != nq)
            else:
                if mask is None:
                    mask = torch.ones(n, pos + n, dtype=torch.bool, device=x.device).tril(diagonal=pos)
                att = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, enable_gqa=nkv != nq)
            x = x + o_w(att.transpose(0, 1).reshape(n, nq * hd))
            h = self._rms(x, w_post)
            gate, up = gu_w(h).chunk(2, dim=-1)
            x = x + down_w(F.silu(gate) * up)
        return x

    def forward(self, ids: list[int], start: int | None = None) -> torch.Tensor:
        """Run `ids` at positions start.. (default: after the cached ones); log-probs of the next token."""
        pos = self.pos if start is None else start
        n = len(ids)
        if pos + n > self.max_len:
            raise ValueError("sequence longer than the cache")
        positions = torch.arange(pos, pos + n, device=self.embed.device)
        x = self._run(ids, positions, pos, None, keep=True)
        self.pos = pos + n
        last = self._rms(x[-1:], self.norm)
        return torch.log_softmax(self.lm_head(last)[0].float(), dim=-1)

    def tree_logprobs(self, start: int, tokens: Sequence[int], parents: Sequence[int]) -> torch.Tensor:
        """Next-token log-probs at every node of a token tree hung after the first `start` cached
        positions: node i holds `tokens[i]` and follows node `parents[i]` (-1: the cached prefix). Nodes
        come after their parents. One forward pass scores every branch; the cache is left as it was."""
        n = len(tokens)
        depth = [0] * n
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(parents):
            if p >= 0:
                depth[i] = depth[p] + 1
                anc[i] = anc[p]
            anc[i, i] = True
        if start + max(depth, default=0) + 1 > self.max_len:
            raise ValueError("sequence longer than the cache")
        dev = self.embed.device
        positions = torch.tensor([start + d for d in depth], device=dev)
        mask = torch.cat([torch.ones(n, start, dtype=torch.bool), anc], dim=1).to(dev)
        x = self._run(tokens, positions, start, mask, keep=False)
        return torch.log_softmax(self.lm_head(self._rms(x, self.norm)).float(), dim=-1)
