"""Loads GGUF files with transformers' own GGUF loader and prints their logits as JSON.

Usage: transformers_gguf.py IDS FILE.gguf [FILE.gguf ...]

IDS: comma-separated token ids. transformers dequantizes each file with the `gguf` package and
undoes llama.cpp's query/key interleaving itself; prints {"FILE.gguf": [[...], ...], ...} (the
float32 logits of every position), one process for all the files (importing torch is the slow
part).
"""

import json
import os
import sys

import torch
import transformers

ids = [int(x) for x in sys.argv[1].split(",")]
out = {}
for path in sys.argv[2:]:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path), dtype=torch.float32
    )
    model.eval()
    with torch.no_grad():
        out[path] = model(torch.tensor([ids])).logits[0].tolist()
print(json.dumps(out))
