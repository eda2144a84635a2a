"""Loads a GGUF file with transformers' own GGUF loader and prints its logits as JSON.

Usage: transformers_gguf.py FILE.gguf IDS

IDS: comma-separated token ids. transformers dequantizes the file with the `gguf` package and
undoes llama.cpp's query/key interleaving itself; prints {"logits": [[...], ...]} (float32).
"""

import json
import os
import sys

import torch
import transformers

path, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
model = transformers.AutoModelForCausalLM.from_pretrained(
    os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path), dtype=torch.float32
)
model.eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
print(json.dumps({"logits": logits.tolist()}))
