"""The official OpenAI Python client against `hearth serve`.

Run by the Rust test `openai_python_client` (src-tauri/crates/cli/tests/serve.rs), which
starts the server and passes HEARTH_URL, HEARTH_TOKEN and HEARTH_MODEL. Exits non-zero
(an AssertionError or an unexpected exception) on any failure.
"""

import os

import openai

url = os.environ["HEARTH_URL"]
token = os.environ["HEARTH_TOKEN"]
model = os.environ["HEARTH_MODEL"]
client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=120)

# Models.
ids = [m.id for m in client.models.list().data]
assert model in ids, ids

# Chat, whole.
reply = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}],
    max_tokens=12,
    temperature=0,
)
choice = reply.choices[0]
assert choice.message.role == "assistant", choice
assert choice.message.content, choice
assert choice.finish_reason in ("stop", "length"), choice
assert reply.usage.completion_tokens >= 1 and reply.usage.total_tokens > reply.usage.completion_tokens, reply.usage

# A batch of several tokens rounds otherwise than one token at a time, so two replies
# compare exactly only from the same cache state: each request compared below is sent
# once before, and the server (started with --draft 0) then reads its prompt's last token
# alone both times.
COUNT = [{"role": "user", "content": "Count from one to five."}]
client.chat.completions.create(model=model, messages=COUNT, max_tokens=16, temperature=0)

# Chat, streamed, with usage.
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count from one to five."}],
    max_tokens=16,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert text, chunks
assert finishes in (["stop"], ["length"]), finishes
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1, chunks[-1]
assert len({c.id for c in chunks}) == 1

# The same request whole and streamed gives the same text (greedy).
whole = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=16, temperature=0
)
assert whole.choices[0].message.content == text, (whole.choices[0].message.content, text)

# Plain completion, whole and streamed (after the same request, as above).
client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
assert completion.choices[0].text, completion
assert completion.usage.completion_tokens >= 1
streamed = "".join(
    c.choices[0].text for c in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
    ) if c.choices
)
assert streamed == completion.choices[0].text, (streamed, completion.choices[0].text)

# Errors come back as the client's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.code == "model_not_found", e
try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=-1)
    raise AssertionError("max_tokens=-1 was accepted")
except openai.BadRequestError as e:
    assert e.param == "max_tokens", e
try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], temperature=-1)
    raise AssertionError("temperature=-1 was accepted")
except openai.BadRequestError as e:
    assert e.param == "temperature", e
try:
    openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong token was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e

print("openai client: all checks passed")
