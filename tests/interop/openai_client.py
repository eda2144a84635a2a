"""Talks to `workbench serve` with the official `openai` Python client.

Usage: openai_client.py BASE_URL MODEL PROMPT_IDS_JSON EXPECTED_IDS_JSON LOGITS_JSON_FILE

Checks /v1/models, completions (token-id prompt, greedy, logprobs, ids returned as vLLM's
`token_id:N`), chat completions with logprobs, streaming chat, scoring the prompt without
generating (vLLM's `prompt_logprobs`, and `echo` with `logprobs`, both with `max_tokens=0`:
every score equal to `workbench model logits --json` for the prompt, log-softmaxed), and that
errors arrive as the client's typed exceptions. Prints "openai client ok".
"""

import json
import math
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
prompt_ids, expected = json.loads(sys.argv[3]), json.loads(sys.argv[4])
with open(sys.argv[5]) as f:
    logits = json.load(f)["logits"]
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


def log_softmax(row):
    top = max(row)
    lse = top + math.log(sum(math.exp(x - top) for x in row))
    return [x - lse for x in row]


# `logprobs[i]` is the distribution over the token at position i + 1.
dists = [log_softmax(r) for r in logits]
assert len(dists) == len(prompt_ids)


def near(a, b):
    return abs(a - b) <= 1e-4


scored = client.completions.create(
    model=model, prompt=prompt_ids, max_tokens=0, extra_body={"prompt_logprobs": 3}
)
plp = scored.choices[0].model_extra["prompt_logprobs"]
assert len(plp) == len(prompt_ids) and plp[0] is None, plp[:2]
for i in range(1, len(prompt_ids)):
    dist, own = dists[i - 1], prompt_ids[i]
    entry = plp[i]
    assert near(entry[str(own)]["logprob"], dist[own]), (i, entry, dist[own])
    assert entry[str(own)]["rank"] == 1 + sum(1 for x in dist if x > dist[own])
    best = sorted(range(len(dist)), key=lambda t: -dist[t])[:3]
    for rank, t in enumerate(best, 1):
        assert near(entry[str(t)]["logprob"], dist[t]) and entry[str(t)]["rank"] == rank
assert scored.usage.completion_tokens == 0

echoed = client.completions.create(
    model=model,
    prompt=prompt_ids,
    max_tokens=0,
    echo=True,
    logprobs=3,
    extra_body={"return_tokens_as_token_ids": True},
)
lp = echoed.choices[0].logprobs
assert [int(t.split(":")[1]) for t in lp.tokens] == prompt_ids
assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
for i in range(1, len(prompt_ids)):
    dist = dists[i - 1]
    assert near(lp.token_logprobs[i], dist[prompt_ids[i]])
    assert len(lp.top_logprobs[i]) == 3
    for t, x in lp.top_logprobs[i].items():
        assert near(x, dist[int(t.split(":")[1])])

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
