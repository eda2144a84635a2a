"""Checks that a tokenizer directory the workbench saved loads in transformers and agrees with us.

Usage: check_tokenizer_dir.py TOKENIZER_DIR EXPECTED_JSON

EXPECTED_JSON is {"messages": [{"role", "content"}, ...], "add_generation_prompt": bool,
"expected": "..."} with our rendering of the chat template (all three optional), and optionally
"encodings": [{"text": "...", "ids": [id, ...], "special": bool}] with our ids (special: encoded
with add_special_tokens, default false). The directory is
loaded with AutoTokenizer from its files alone (no hub). Exits 1 naming the first difference;
prints "tokenizer dir ok" otherwise.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_tokenizer_dir.py TOKENIZER_DIR EXPECTED_JSON")
    tokenizer_dir, expected_json = sys.argv[1:]
    with open(expected_json, encoding="utf-8") as f:
        expected = json.load(f)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if "messages" in expected:
        rendered = tokenizer.apply_chat_template(
            expected["messages"], tokenize=False, add_generation_prompt=expected["add_generation_prompt"]
        )
        if rendered != expected["expected"]:
            sys.exit(f"error: chat template renders differently\n  ours:         {expected['expected']!r}\n  transformers: {rendered!r}")
    for case in expected.get("encodings", []):
        ids = tokenizer.encode(case["text"], add_special_tokens=case.get("special", False))
        if ids != case["ids"]:
            sys.exit(f"error: {case['text']!r} encodes differently\n  ours:         {case['ids']}\n  transformers: {ids}")
    print("tokenizer dir ok")


if __name__ == "__main__":
    main()
