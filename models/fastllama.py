"""A lean inference path for Llama-style checkpoints: the same arithmetic as transformers' LlamaForCausalLM
with a preallocated KV cache and none of the per-call framework overhead (which dominates single-token
decoding of a small model on a CPU). Used by the completion engine when the model qualifies."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


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


class FastLlama:
    """Greedy-decoding helper over a LlamaForCausalLM's weights (float32, CPU or GPU)."""

    def __init__(self, model: Any, max_len: int = 1024) -> None:
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
        self.embed = inner.embed_tokens.weight.detach()
        self.lm_head = model.lm_head.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]).detach()
            gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
            self.layers.append(
                (
                    layer.input_layernorm.weight.detach(),
                    qkv,
                    att.o_proj.weight.detach(),
                    layer.post_attention_layernorm.weight.detach(),
                    gate_up,
                    mlp.down_proj.weight.detach(),
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

    def forward(self, ids: list[int], start: int | None = None) -> torch.Tensor:
        """Run `ids` at positions start.. (default: after the cached ones); log-probs of the next token."""
        pos = self.pos if start is None else start
        n = len(ids)
        if pos + n > self.max_len:
            raise ValueError("sequence longer than the cache")
        x = self.embed[torch.tensor(ids, device=self.embed.device)]  # (n, d)
        cos, sin = self.cos[pos : pos + n], self.sin[pos : pos + n]
        nq, nkv, hd = self.n_heads, self.n_kv, self.hd
        for i, (w_in, qkv_w, o_w, w_post, gu_w, down_w) in enumerate(self.layers):
            h = self._rms(x, w_in)
            qkv = h @ qkv_w.T
            q = qkv[:, : nq * hd].view(n, nq, hd).transpose(0, 1)
            k = qkv[:, nq * hd : (nq + nkv) * hd].view(n, nkv, hd).transpose(0, 1)
            v = qkv[:, (nq + nkv) * hd :].view(n, nkv, hd).transpose(0, 1)
            q = q * cos + self._rot(q) * sin
            k = k * cos + self._rot(k) * sin
            self.k[i, :, pos : pos + n] = k
            self.v[i, :, pos : pos + n] = v
            keys = self.k[i, :, : pos + n]
            vals = self.v[i, :, : pos + n]
            if nkv != nq:
                keys = keys.repeat_interleave(nq // nkv, dim=0)
                vals = vals.repeat_interleave(nq // nkv, dim=0)
            if n == 1:
                att = F.scaled_dot_product_attention(q, keys, vals)
            else:
                mask = torch.ones(n, pos + n, dtype=torch.bool, device=x.device).tril(diagonal=pos)
                att = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask)
            x = x + att.transpose(0, 1).reshape(n, nq * hd) @ o_w.T
            h = self._rms(x, w_post)
            gu = h @ gu_w.T
            gate, up = gu.chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ down_w.T
        self.pos = pos + n
        last = self._rms(x[-1], self.norm)
        return torch.log_softmax(last @ self.lm_head.T, dim=-1)
