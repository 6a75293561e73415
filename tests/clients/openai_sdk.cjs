// The official `openai` Node package (npm) as a client of `ai-runner serve`.
// Run by tests/tests/integration/openai_clients.rs: node openai_sdk.cjs <base_url>
// Every check asserts; a failure exits non-zero.
const assert = require("node:assert/strict");
const OpenAIModule = require("openai");
const OpenAI = OpenAIModule.OpenAI ?? OpenAIModule.default ?? OpenAIModule;

const BASE = process.argv[2];
const STREAMED =
  "I'm unable to provide real-time weather updates. To get the current weather in San " +
  "Francisco, I recommend checking a reliable weather website or a weather app.";
const client = new OpenAI({ baseURL: BASE, apiKey: "not-checked-on-loopback", maxRetries: 0 });

async function raises(cls, status, code, body) {
  try {
    await client.chat.completions.create(body);
  } catch (e) {
    assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    return e;
  }
  assert.fail(`${cls.name} not raised for ${JSON.stringify(body)}`);
}

(async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "k", messages: [{ role: "user", content: "明天呢？" }], variables: { TOPIC: "北京" } })
    .withResponse();
  assert.equal(data.choices[0].message.content, "晴天");
  assert.equal(data.id, response.headers.get("x-ai-runner-trace-id"));
  assert.equal(response.headers.get("x-ai-runner-config"), "k");

  let text = "";
  let usage = null;
  const stream = await client.chat.completions.create({
    model: "stream", messages: [], stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
    else if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, STREAMED);
  assert.equal(usage.completion_tokens, 30);

  const runner = client.chat.completions.stream({ model: "stream", messages: [] });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, STREAMED);

  const tools = await client.chat.completions.create({
    model: "tools", messages: [{ role: "user", content: "weather in Paris?" }],
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
  });
  assert.equal(tools.choices[0].message.tool_calls[0].function.name, "get_weather");
  assert.equal(tools.choices[0].finish_reason, "tool_calls");

  const routed = await client.chat.completions.create({ model: "route:shop/ask", messages: [] });
  assert.equal(routed.choices[0].message.content, "备用");

  await raises(OpenAI.NotFoundError, 404, "CONFIG_NOT_FOUND", { model: "nope", messages: [] });
  await raises(OpenAI.BadRequestError, 400, "PARAM_NOT_ALLOWED", { model: "strict", messages: [], seed: 1 });
  await raises(OpenAI.RateLimitError, 429, "HTTP_429_RATE_LIMIT", { model: "limited", messages: [] });
  await raises(OpenAI.InternalServerError, 502, "HTTP_5XX_SERVER_ERROR", { model: "down", messages: [] });
  await raises(OpenAI.UnprocessableEntityError, 422, "SCHEMA_INVALID", {
    model: "not-json", messages: [], response_format: { type: "json_object" },
  });
  await raises(OpenAI.APIError, 402, "BUDGET_EXCEEDED", { model: "route:spent/r", messages: [] });

  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes("k") && ids.includes("route:shop/ask"), ids.join(","));
  // Bearer keys (ACCESS_MODE=bearer).
  const bearer = process.env.BEARER_BASE;
  const ok = new OpenAI({ baseURL: bearer, apiKey: process.env.TOKEN_OK, maxRetries: 0 });
  const answer = await ok.chat.completions.create({ model: "k", messages: [] });
  assert.equal(answer.choices[0].message.content, "晴天");
  for (const [key, cls, status, code] of [
    ["air-ak_nobody-" + "0".repeat(64), OpenAI.AuthenticationError, 401, "AUTH_TOKEN_INVALID"],
    [process.env.TOKEN_SCOPED, OpenAI.PermissionDeniedError, 403, "AUTH_SCOPE_DENIED"],
  ]) {
    const c = new OpenAI({ baseURL: bearer, apiKey: key, maxRetries: 0 });
    try {
      await c.chat.completions.create({ model: "k", messages: [] });
      assert.fail(`${code} not raised`);
    } catch (e) {
      assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}`);
      assert.equal(e.status, status);
      assert.equal(e.code, code);
    }
  }
  console.log("openai-node ok");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
