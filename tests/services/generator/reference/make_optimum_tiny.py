"""A real Optimum export of the tests' tiny random-weight Llama, as a committed fixture.

The tests' tiny GGUF (``generator_helpers.write_tiny_gguf``, seed 0) is loaded by Hugging
Face transformers (``gguf_file=``) and exported with ``optimum-cli export onnx --task
text-generation-with-past``: the engine must run such a directory unchanged, and its
logits must match the numpy reference of the same weights. Needs torch, transformers and
optimum, so it runs in a throw-away environment (see README.md)::

    python make_optimum_tiny.py --out tiny-optimum
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from tests.services.generator.generator_helpers import TinyConfig, write_tiny_gguf  # noqa: E402

KEEP = ("model.onnx", "config.json", "generation_config.json", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_tiny_gguf(work / "tiny.gguf", TinyConfig())
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file="tiny.gguf")
        model = AutoModelForCausalLM.from_pretrained(
            work, gguf_file="tiny.gguf", dtype=torch.float32
        )
        model.save_pretrained(work / "hf")
        tokenizer.save_pretrained(work / "hf")
        subprocess.run(
            [
                "optimum-cli", "export", "onnx", "--model", str(work / "hf"),
                "--task", "text-generation-with-past", str(work / "onnx"),
            ],
            check=True,
        )  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (work / "onnx" / name).is_file():
                shutil.copy(work / "onnx" / name, args.out / name)
    print(f"wrote {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
