"""Talks to `workbench serve` with the official `openai` Python client.

Usage: openai_client.py BASE_URL MODEL PROMPT_IDS_JSON EXPECTED_IDS_JSON

Checks /v1/models, completions (token-id prompt, greedy, logprobs, ids returned as vLLM's
`token_id:N`), chat completions with logprobs, streaming chat, and that errors arrive as the
client's typed exceptions. Prints "openai client ok".
"""

import json
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
prompt_ids, expected = json.loads(sys.argv[3]), json.loads(sys.argv[4])
client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0, timeout=60)

models = [m.id for m in client.models.list()]
assert models == [model], models

c = client.completions.create(
    model=model,
    prompt=prompt_ids,
    max_tokens=len(expected),
    temperature=0,
    logprobs=5,
    extra_body={"return_tokens_as_token_ids": True},
)
ids = [int(t.split(":")[1]) for t in c.choices[0].logprobs.tokens]
assert ids == expected, (ids, expected)
assert len(c.choices[0].logprobs.top_logprobs[0]) == 5
assert c.usage.completion_tokens == len(expected)
assert c.choices[0].finish_reason == "length"

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}],
    max_tokens=5,
    temperature=0,
    logprobs=True,
    top_logprobs=3,
)
choice = chat.choices[0]
assert choice.message.role == "assistant"
assert len(choice.logprobs.content) >= 1
assert len(choice.logprobs.content[0].top_logprobs) == 3
assert all(lp.logprob <= 0 for lp in choice.logprobs.content)

text, finish = "", None
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True
):
    delta = chunk.choices[0].delta.content or ""
    text += delta
    finish = chunk.choices[0].finish_reason or finish
assert finish in ("length", "stop"), finish

# The same request without streaming gives the same text.
same = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
assert same.choices[0].message.content == text, (same.choices[0].message.content, text)

try:
    client.completions.create(model="not-this-one", prompt="x", max_tokens=1)
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found" if isinstance(e.body, dict) and "code" in e.body else True
try:
    client.completions.create(model=model, prompt="x", max_tokens=10**6)
    raise SystemExit("max_tokens beyond the limit was accepted")
except openai.BadRequestError:
    pass

print("openai client ok")
