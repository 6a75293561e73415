"""The official `openai` Python package (PyPI) as a client of `ai-runner serve`.

Run by tests/tests/integration/openai_clients.rs against a server it seeded:
    python3 openai_sdk.py <base_url>
Every check asserts; any failure exits non-zero with the traceback.
"""

import json
import sys

import openai
from openai import OpenAI

BASE = sys.argv[1]
STREAMED = (
    "I'm unable to provide real-time weather updates. To get the current weather in San "
    "Francisco, I recommend checking a reliable weather website or a weather app."
)

client = OpenAI(base_url=BASE, api_key="not-checked-on-loopback", max_retries=0)


def raises(cls, status, code, **kwargs):
    try:
        client.chat.completions.create(**kwargs)
    except cls as e:
        assert e.status_code == status, (e.status_code, status)
        assert e.code == code, (e.code, code)
        assert isinstance(e.body, dict) and e.body.get("code") == code, e.body
        return e
    raise AssertionError(f"{cls.__name__} not raised for {kwargs}")


# A plain call, variables through extra_body; the raw response carries our headers.
raw = client.chat.completions.with_raw_response.create(
    model="k",
    messages=[{"role": "user", "content": "明天呢？"}],
    temperature=0.2,
    extra_body={"variables": {"TOPIC": "北京"}},
)
r = raw.parse()
assert r.choices[0].message.content == "晴天", r
assert r.id == raw.headers["x-ai-runner-trace-id"], (r.id, raw.headers)
assert raw.headers["x-ai-runner-config"] == "k"
assert raw.headers["x-ai-runner-audit-ids"].isdigit()
assert r._request_id == r.id
assert r.usage.total_tokens == 20

# A stream with usage: the chunks assemble the text; the last chunk has usage and no choices.
text, usage, ids = "", None, set()
for chunk in client.chat.completions.create(
    model="stream", messages=[], stream=True, stream_options={"include_usage": True}
):
    ids.add(chunk.id)
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    elif chunk.usage:
        usage = chunk.usage
assert text == STREAMED, text
assert usage is not None and usage.completion_tokens == 30, usage
assert len(ids) == 1, ids

# Without include_usage, no chunk carries usage.
for chunk in client.chat.completions.create(model="stream", messages=[], stream=True):
    assert chunk.usage is None, chunk

# The SDK's stream helper assembles the final completion.
with client.chat.completions.stream(model="stream", messages=[]) as s:
    final = s.get_final_completion()
assert final.choices[0].message.content == STREAMED, final

# A tool call passes through.
r = client.chat.completions.create(
    model="tools",
    messages=[{"role": "user", "content": "weather in Paris?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}],
)
call = r.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
assert r.choices[0].finish_reason == "tool_calls"
assert r.choices[0].message.content is None

# response_format with a JSON Schema, through the SDK's parse helper too.
schema = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}
r = client.chat.completions.create(model="schema", messages=[], response_format=schema)
assert json.loads(r.choices[0].message.content) == {"city": "Paris"}

# A route failing over.
raw = client.chat.completions.with_raw_response.create(model="route:shop/ask", messages=[])
assert raw.parse().choices[0].message.content == "备用", raw.parse()
assert raw.headers["x-ai-runner-config"] == "backup"
assert len(raw.headers["x-ai-runner-audit-ids"].split(",")) == 2

# Every error class.
e = raises(openai.NotFoundError, 404, "CONFIG_NOT_FOUND", model="nope", messages=[])
assert e.param == "model"
raises(openai.BadRequestError, 400, "INVALID_INPUT", model="k", messages=[{"content": "no role"}])
raises(openai.BadRequestError, 400, "PARAM_NOT_ALLOWED", model="strict", messages=[], seed=1)
raises(openai.RateLimitError, 429, "HTTP_429_RATE_LIMIT", model="limited", messages=[])
raises(openai.InternalServerError, 502, "HTTP_5XX_SERVER_ERROR", model="down", messages=[])
raises(openai.UnprocessableEntityError, 422, "SCHEMA_INVALID", model="not-json", messages=[],
       response_format={"type": "json_object"})
e = raises(openai.APIStatusError, 402, "BUDGET_EXCEEDED", model="route:spent/r", messages=[])
assert e.type == "insufficient_quota", e.type

# The SDK's own retry honours Retry-After: one more request, a second later.
retrying = OpenAI(base_url=BASE, api_key="x", max_retries=1)
try:
    retrying.chat.completions.create(model="limited-retry", messages=[])
    raise AssertionError("no RateLimitError")
except openai.RateLimitError:
    pass

# /v1/models lists configs and routes.
ids = [m.id for m in client.models.list()]
assert "k" in ids and "route:shop/ask" in ids, ids
assert client.models.retrieve("route:shop/ask").id == "route:shop/ask"
try:
    client.models.retrieve("nope")
    raise AssertionError("NotFoundError not raised")
except openai.NotFoundError as e:
    assert e.code == "CONFIG_NOT_FOUND"

print("openai-python", openai.__version__, "ok")

# Bearer keys (ACCESS_MODE=bearer): the SDK's api_key is the token `ai-runner access create
# --bearer` printed.
import os

bearer = os.environ["BEARER_BASE"]
ok = OpenAI(base_url=bearer, api_key=os.environ["TOKEN_OK"], max_retries=0)
assert ok.chat.completions.create(model="k", messages=[]).choices[0].message.content == "晴天"
for key, cls, status, code in [
    ("air-ak_nobody-" + "0" * 64, openai.AuthenticationError, 401, "AUTH_TOKEN_INVALID"),
    # Function Compute's trigger drops an Authorization that is not ours (it may be FC's own
    # JWT): there the call carries no token at all.
    ("sk-not-ours", openai.AuthenticationError, 401, ("AUTH_TOKEN_INVALID", "AUTH_TOKEN_MISSING")),
    (os.environ["TOKEN_SCOPED"], openai.PermissionDeniedError, 403, "AUTH_SCOPE_DENIED"),
]:
    try:
        OpenAI(base_url=bearer, api_key=key, max_retries=0).chat.completions.create(model="k", messages=[])
        raise AssertionError(f"{code} not raised")
    except cls as e:
        codes = code if isinstance(code, tuple) else (code,)
        assert e.status_code == status and e.code in codes, (e.status_code, e.code)
scoped = OpenAI(base_url=bearer, api_key=os.environ["TOKEN_SCOPED"], max_retries=0)
listed = [m.id for m in scoped.models.list()]
assert "k" not in listed and "route:shop/ask" in listed, listed  # its configs: only `other`
quota = OpenAI(base_url=bearer, api_key=os.environ["TOKEN_QUOTA"], max_retries=0)
quota.chat.completions.create(model="k", messages=[])
try:
    quota.chat.completions.create(model="k", messages=[])
    raise AssertionError("QUOTA_EXCEEDED not raised")
except openai.RateLimitError as e:
    assert e.code == "QUOTA_EXCEEDED" and int(e.response.headers["retry-after"]) > 0

print("openai-python bearer ok")
