// openai_client.js — drives a running shardserve with the official `openai` npm client:
// models, completions, chat (greedy output == golden), streaming == non-streaming, usage, stop, seeds,
// n, logprobs, and error statuses. Usage: node openai_client.js BASE_URL MODEL GOLDEN_JSON [API_KEY]
'use strict';
const path = require('path');
const fs = require('fs');
const assert = require('assert');
const OpenAI = require(path.join(__dirname, '..', 'node_modules', 'openai'));

const [baseURL, model, goldenPath, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: apiKey || 'none', maxRetries: 0, timeout: 120000 });
const golden = JSON.parse(fs.readFileSync(goldenPath, 'utf8'));

let passed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  }
}

async function collect(stream) {
  const texts = {};
  let usage = null, finish = {}, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      const piece = c.text !== undefined ? c.text : (c.delta && c.delta.content) || '';
      texts[c.index] = (texts[c.index] || '') + piece;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  return { texts, usage, finish, chunks };
}

async function main() {
  const chatCase = golden.chat[0];
  const nGen = golden.n_gen;

  await check('models.list', async () => {
    const list = await client.models.list();
    assert.deepStrictEqual(list.data.map((m) => m.id), [model]);
  });

  await check('chat greedy == golden greedy_text and usage', async () => {
    const r = await client.chat.completions.create({
      model, messages: chatCase.messages, max_tokens: nGen, temperature: 0, ignore_eos: true,
    });
    assert.match(r.id, /^chatcmpl-/);
    assert.strictEqual(r.object, 'chat.completion');
    assert.strictEqual(r.model, model);
    assert.ok(Number.isInteger(r.created));
    assert.strictEqual(r.choices[0].message.role, 'assistant');
    assert.strictEqual(r.choices[0].message.content, golden.cases[0].greedy_text);
    assert.strictEqual(r.choices[0].finish_reason, 'length');
    assert.strictEqual(r.usage.prompt_tokens, chatCase.ids.length);
    assert.strictEqual(r.usage.completion_tokens, nGen);
    assert.strictEqual(r.usage.total_tokens, chatCase.ids.length + nGen);
  });

  await check('chat streaming == non-streaming, role first, include_usage', async () => {
    const args = { model, messages: chatCase.messages, max_completion_tokens: nGen, temperature: 0, ignore_eos: true };
    const full = await client.chat.completions.create(args);
    const stream = await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
    let first = null;
    const texts = [];
    let usage = null, finish = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (first === null) first = c.delta.role;
        texts.push(c.delta.content || '');
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.strictEqual(first, 'assistant');
    assert.strictEqual(texts.join(''), full.choices[0].message.content);
    assert.strictEqual(finish, 'length');
    assertUsage(usage, full.usage);
  });

  await check('completions: text prompt, token-id prompt, streaming == non-streaming', async () => {
    const a = await client.completions.create({ model, prompt: 'The capital of France is', max_tokens: 12, ignore_eos: true });
    assert.match(a.id, /^cmpl-/);
    assert.strictEqual(a.object, 'text_completion');
    assert.strictEqual(a.usage.completion_tokens, 12);
    assert.strictEqual(a.choices[0].finish_reason, 'length');
    const ids = golden.cases[1].prompt_ids;
    const b = await client.completions.create({ model, prompt: ids, max_tokens: nGen, ignore_eos: true });
    assert.strictEqual(b.usage.prompt_tokens, ids.length);
    assert.strictEqual(b.choices[0].text, golden.cases[1].greedy_text);
    const s = await collect(await client.completions.create({
      model, prompt: 'The capital of France is', max_tokens: 12, ignore_eos: true, stream: true,
      stream_options: { include_usage: true },
    }));
    assert.strictEqual(s.texts[0], a.choices[0].text);
    assert.strictEqual(s.finish[0], 'length');
    assertUsage(s.usage, a.usage);
  });

  await check('stop string cuts the text and finishes with stop', async () => {
    const base = await client.completions.create({ model, prompt: ids2text(), max_tokens: nGen, ignore_eos: true });
    const text = base.choices[0].text;
    assert.ok(text.length >= 6, `text too short: ${JSON.stringify(text)}`);
    // A stop string starting in the middle of the output: the result is the text before it.
    const cut = Math.floor(text.length / 2);
    const stop = text.slice(cut, cut + 3);
    const want = text.slice(0, text.indexOf(stop));
    const r = await client.completions.create({ model, prompt: ids2text(), max_tokens: nGen, stop: [stop] });
    assert.strictEqual(r.choices[0].text, want);
    assert.strictEqual(r.choices[0].finish_reason, 'stop');
    const rs = await collect(await client.completions.create({ model, prompt: ids2text(), max_tokens: nGen, stop, stream: true }));
    assert.strictEqual(rs.texts[0], want);
    assert.strictEqual(rs.finish[0], 'stop');
  });

  await check('seed reproducibility at temperature 1; n choices indexed', async () => {
    const args = { model, prompt: 'Once upon a time', max_tokens: 10, temperature: 1, seed: 1234, ignore_eos: true };
    const a = await client.completions.create(args);
    const b = await client.completions.create(args);
    assert.strictEqual(a.choices[0].text, b.choices[0].text);
    const n = await client.completions.create({ ...args, n: 3 });
    assert.deepStrictEqual(n.choices.map((c) => c.index).sort(), [0, 1, 2]);
    assert.strictEqual(n.choices.find((c) => c.index === 0).text, a.choices[0].text); // choice i uses seed + i
    assert.strictEqual(n.usage.completion_tokens, 30);
    const ns = await collect(await client.completions.create({ ...args, n: 3, stream: true }));
    for (const c of n.choices) assert.strictEqual(ns.texts[c.index], c.text);
  });

  await check('logprobs (completions int, chat bool + top_logprobs)', async () => {
    const r = await client.completions.create({ model, prompt: 'Hello', max_tokens: 4, logprobs: 2, ignore_eos: true });
    const lp = r.choices[0].logprobs;
    assert.strictEqual(lp.tokens.length, 4);
    assert.strictEqual(lp.token_logprobs.length, 4);
    assert.strictEqual(lp.tokens.join(''), r.choices[0].text);
    for (const t of lp.top_logprobs) assert.strictEqual(Object.keys(t).length <= 2 && Object.keys(t).length >= 1, true);
    for (const v of lp.token_logprobs) assert.ok(v <= 0);
    const c = await client.chat.completions.create({
      model, messages: chatCase.messages, max_tokens: 3, logprobs: true, top_logprobs: 2, ignore_eos: true,
    });
    const content = c.choices[0].logprobs.content;
    assert.strictEqual(content.length, 3);
    for (const e of content) {
      assert.strictEqual(e.top_logprobs.length, 2);
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
      assert.ok(e.logprob <= 0);
    }
  });

  await check('errors: 400 with field, 404 unknown model', async () => {
    await assert.rejects(client.completions.create({ model, prompt: 'x', max_tokens: 0 }), (e) => {
      assert.strictEqual(e.status, 400);
      assert.strictEqual(e.param, 'max_tokens');
      assert.match(e.message, /'max_tokens' must be at least 1/);
      return true;
    });
    await assert.rejects(client.completions.create({ model, prompt: 'x', temperature: -1 }), (e) => e.status === 400);
    await assert.rejects(client.completions.create({ model, prompt: '' }), (e) => e.status === 400 && /empty/.test(e.message));
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: chatCase.messages }),
      (e) => e.status === 404 && /no-such-model/.test(e.message));
    await assert.rejects(client.completions.create({ model, prompt: 'x', max_tokens: 10000000 }), (e) => e.status === 400);
  });

  console.log(`${passed} checks passed`);
}

// Token counts must agree; cached_tokens depends on what the prefix cache held at the time.
function assertUsage(got, want) {
  assert.ok(got, 'no usage chunk');
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.strictEqual(got[k], want[k], k);
}

function ids2text() {
  return 'Write a list of words:';
}

main().catch((e) => {
  console.log(`FAIL ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
});
