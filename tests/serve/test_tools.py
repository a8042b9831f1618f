#!/usr/bin/env python3
"""test_tools.py — function calling end to end (CPU): the e2e-llama3-tok fixture served under five chat templates
that take tools (a Llama 3-style one, calls as JSON objects; a Hermes-style one, calls in <tool_call> blocks; a
Mistral-style one, [TOOL_CALLS] lists; a newer Mistral-style one, [TOOL_CALLS]name[ARGS]{...}; a DeepSeek-style one,
calls in its <｜tool▁call▁begin｜> markers) and under its own, which takes none. Forced calls (tool_choice required or named) come back as tool_calls, streamed or
not (streamed: a chunk naming each call, then its arguments in pieces as they are written, which add up to the
non-streamed arguments); an answer that is text stays content; the tools reach the prompt; earlier calls and tool
results in the history render; every misuse is a 400 naming its parameter.
Usage: test_tools.py BINARY FIXTURES_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Server, check, finish, stop_checked  # noqa: E402

BINARY, FIXTURES = sys.argv[1:3]
FIXTURE = os.path.join(FIXTURES, "models", "e2e-llama3-tok")

JSON_TEMPLATE = (
    "{{- bos_token }}{%- if tools is not none %}<|start_header_id|>system<|end_header_id|>\n\n"
    "Call a function by answering {\"name\": ..., \"parameters\": {...}}:\n{%- for t in tools %}{{ t | tojson }}\n"
    "{%- endfor %}<|eot_id|>{%- endif %}{%- for m in messages %}{%- if 'tool_calls' in m %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"{{ m.tool_calls[0].function.name }}\", "
    "\"parameters\": {{ m.tool_calls[0].function.arguments | tojson }}}<|eot_id|>{%- else %}"
    "<|start_header_id|>{{ 'ipython' if m.role == 'tool' else m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}")
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n<tools>{%- for t in tools %}{{ t | tojson }}{%- endfor %}</tools>\n"
    "Answer with <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call><|im_end|>\n{%- endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")
MISTRAL_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}{%- if m.role == 'user' %}{%- if tools and loop.last %}[AVAILABLE_TOOLS] "
    "{{ tools | tojson }}[/AVAILABLE_TOOLS]{%- endif %}[INST] {{ m.content }}[/INST]{%- elif 'tool_calls' in m %}"
    "[TOOL_CALLS] {{ m.tool_calls | tojson }}{{ eos_token }}{%- else %}{{ m.content }}{%- endif %}{%- endfor %}")
MISTRAL_V11_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}{%- if m.role == 'user' %}{%- if tools and loop.last %}[AVAILABLE_TOOLS]"
    "{{ tools | tojson }}[/AVAILABLE_TOOLS]{%- endif %}[INST]{{ m.content }}[/INST]{%- elif 'tool_calls' in m %}"
    "{%- for c in m.tool_calls %}{{- '[TOOL_CALLS]' + c.function.name + '[ARGS]' }}{{ c.function.arguments | tojson }}"
    "{%- endfor %}{{ eos_token }}{%- elif m.role == 'tool' %}[TOOL_RESULTS]{{ m.content }}[/TOOL_RESULTS]"
    "{%- else %}{{ m.content }}{%- endif %}{%- endfor %}")
DEEPSEEK_TEMPLATE = (
    "{{- bos_token }}{%- if tools %}## Tools\n{%- for t in tools %}{{ t | tojson }}\n{%- endfor %}{%- endif %}"
    "{%- for m in messages %}{%- if m.role == 'user' %}<｜User｜>{{ m.content }}{%- elif 'tool_calls' in m %}"
    "<｜Assistant｜><｜tool▁calls▁begin｜>{%- for c in m.tool_calls %}<｜tool▁call▁begin｜>{{ c.type }}<｜tool▁sep｜>"
    "{{ c.function.name }}\n```json\n{{ c.function.arguments | tojson }}\n```<｜tool▁call▁end｜>{%- endfor %}"
    "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>{%- elif m.role == 'tool' %}<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
    "{{ m.content }}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>{%- else %}<｜Assistant｜>{{ m.content }}"
    "<｜end▁of▁sentence｜>{%- endif %}{%- endfor %}{%- if add_generation_prompt %}<｜Assistant｜>{%- endif %}")

UNIT = {"type": "function", "function": {"name": "set_unit", "description": "Sets the temperature unit",
                                         "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}},
                                                        "required": ["unit"]}}}
NOW = {"type": "function", "function": {"name": "now"}}


def model_dir(template):
    """The fixture's files (linked) with another chat template."""
    d = tempfile.mkdtemp(prefix="shardserve-tools-")
    for f in os.listdir(FIXTURE):
        if f != "tokenizer_config.json":
            os.symlink(os.path.join(FIXTURE, f), os.path.join(d, f))
    cfg = json.load(open(os.path.join(FIXTURE, "tokenizer_config.json")))
    cfg["chat_template"] = template
    json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"))
    return d


TEMPLATES = {"json": JSON_TEMPLATE, "hermes": HERMES_TEMPLATE, "mistral": MISTRAL_TEMPLATE,
             "mistral_v11": MISTRAL_V11_TEMPLATE, "deepseek": DEEPSEEK_TEMPLATE}
dirs = {kind: model_dir(tpl) for kind, tpl in TEMPLATES.items()}
servers = {kind: Server(BINARY, d, ["--max-seq-len", "512"]) for kind, d in dirs.items()}
servers["none"] = Server(BINARY, FIXTURE, ["--max-seq-len", "512"])
MISTRAL_IDS = ("mistral", "mistral_v11")  # their templates refuse other ids in the calls sent back
vocab = json.load(open(os.path.join(FIXTURE, "tokenizer.json")))["model"]["vocab"]
# this random model would otherwise spend its tokens on white space inside the object first
CLOSERS = {str(vocab["{"]): 10, str(vocab['"']): 10, str(vocab["}"]): 10}


def chat(srv, body, status=200):
    st, _, j, _ = srv.post("/v1/chat/completions", body)
    assert st == status, (st, j)
    return j


def auto_text(srv, base):
    """tool_choice auto on srv: the tools are in the prompt; an answer that is text (a random model's; a call is
    possible, but then it must parse) streams as the same content. Returns the answer."""
    plain = chat(srv, base)
    auto = chat(srv, dict(base, tools=[UNIT, NOW]))
    assert auto["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 20, (auto, plain)
    c = auto["choices"][0]
    if "tool_calls" not in c["message"]:
        assert isinstance(c["message"]["content"], str) and c["finish_reason"] in ("stop", "length"), auto
        chunks = stream(srv, dict(base, tools=[UNIT, NOW]))
        text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
        assert text == c["message"]["content"], (text, c)
    return auto


def stream(srv, body):
    port = srv.port
    raw = subprocess.run(["curl", "-sS", "-N", "--max-time", "120", "-d", json.dumps(dict(body, stream=True)),
                          "http://127.0.0.1:%d/v1/chat/completions" % port], capture_output=True, check=True).stdout
    return [json.loads(l[6:]) for l in raw.decode().split("\n") if l.startswith("data: {")]


def streamed_calls(deltas):
    """The calls of a stream's deltas, checked for OpenAI's shape: a call's first delta names it ({"index", "id",
    "type": "function", "function": {"name", "arguments": ""}}), the ones after carry a piece of its arguments
    ({"index", "function": {"arguments"}}); no finish_reason before the last chunk, which is an empty delta with
    finish_reason tool_calls. Returns [{"id", "name", "arguments" (the pieces joined), "pieces"}]."""
    calls = []
    for i, d in enumerate(deltas):
        tcs = d["delta"].get("tool_calls")
        if tcs is None:
            continue
        assert len(tcs) == 1 and d["finish_reason"] is None, d
        tc = tcs[0]
        if "id" in tc:
            assert tc["index"] == len(calls) and tc["type"] == "function", tc
            assert tc["function"]["arguments"] == "" and tc["function"]["name"], tc
            calls.append({"id": tc["id"], "name": tc["function"]["name"], "arguments": "", "pieces": 0})
        else:
            assert set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"}, tc
            assert calls and tc["index"] == len(calls) - 1 and tc["function"]["arguments"], (tc, calls)
            calls[-1]["arguments"] += tc["function"]["arguments"]
            calls[-1]["pieces"] += 1
    assert deltas[-1]["delta"] == {} and deltas[-1]["finish_reason"] == "tool_calls", deltas[-1]
    return calls


def forced(kind, choice, tools):
    return {"messages": [{"role": "user", "content": "Use Celsius."}], "tools": tools, "tool_choice": choice,
            "max_tokens": 120, "logit_bias": CLOSERS}


@check("tool_choice naming a tool: one call of it (JSON, Hermes, Mistral, Mistral v11 and DeepSeek formats), arguments "
       "following its schema, content null, finish_reason tool_calls (Mistral: ids of 9 letters and digits); streamed: a "
       "chunk with its id and name, then its arguments in several pieces that add up to the non-streamed arguments")
def _():
    for kind in TEMPLATES:
        srv = servers[kind]
        body = forced(kind, {"type": "function", "function": {"name": "set_unit"}}, [UNIT, NOW])
        j = chat(srv, body)
        c = j["choices"][0]
        assert c["finish_reason"] == "tool_calls", j
        msg = c["message"]
        assert msg["role"] == "assistant" and msg["content"] is None, j
        assert len(msg["tool_calls"]) == 1, j
        call = msg["tool_calls"][0]
        assert call["type"] == "function" and call["index"] == 0, call
        if kind in MISTRAL_IDS:
            assert len(call["id"]) == 9 and call["id"].isalnum(), call
        else:
            assert call["id"].startswith("call_"), call
        assert call["function"]["name"] == "set_unit", call
        args = json.loads(call["function"]["arguments"])
        assert args in ({"unit": "c"}, {"unit": "f"}), args
        chunks = stream(srv, body)
        deltas = [ch["choices"][0] for ch in chunks if ch["choices"]]
        assert "".join(d["delta"].get("content") or "" for d in deltas) == "", deltas  # no call leaks as text
        got = streamed_calls(deltas)
        assert len(got) == 1 and got[0]["name"] == "set_unit", deltas
        assert got[0]["arguments"] == call["function"]["arguments"], (got, call)  # byte for byte
        assert got[0]["pieces"] > 1, got  # sent as written, not whole at the end
        if kind in MISTRAL_IDS:
            assert len(got[0]["id"]) == 9 and got[0]["id"].isalnum(), got
        else:
            assert got[0]["id"].startswith("call_"), got


@check("tool_choice required with two tools: a call of one of them; parallel_tool_calls false keeps one; streamed "
       "the same")
def _():
    body = dict(forced("json", "required", [UNIT, NOW]), parallel_tool_calls=False)
    j = chat(servers["json"], body)
    calls = j["choices"][0]["message"]["tool_calls"]
    assert len(calls) == 1 and calls[0]["function"]["name"] in ("set_unit", "now"), j
    assert isinstance(json.loads(calls[0]["function"]["arguments"]), dict), j
    got = streamed_calls([ch["choices"][0] for ch in stream(servers["json"], body) if ch["choices"]])
    assert [(g["name"], g["arguments"]) for g in got] == [(calls[0]["function"]["name"],
                                                            calls[0]["function"]["arguments"])], (got, calls)


@check("tool_choice auto: this model answers text, which stays content (streamed the same); the tools are in the "
       "prompt; tool_choice none renders them but parses nothing")
def _():
    srv = servers["json"]
    base = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12}
    auto = auto_text(srv, base)
    none = chat(srv, dict(base, tools=[UNIT, NOW], tool_choice="none"))
    assert none["usage"]["prompt_tokens"] == auto["usage"]["prompt_tokens"], (none, auto)
    assert "tool_calls" not in none["choices"][0]["message"], none
    # an answer that is a call (guided_json makes this random model write one): parsed out, streamed or not
    call = {"type": "object", "properties": {"name": {"const": "now"}, "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}, "required": ["name", "parameters"]}
    body = dict(base, tools=[UNIT, NOW], guided_json=call, max_tokens=60, logit_bias=CLOSERS)
    j = chat(srv, body)
    c = j["choices"][0]
    assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None, j
    assert [t["function"] for t in c["message"]["tool_calls"]] == [{"name": "now", "arguments": "{}"}], j
    deltas = [ch["choices"][0] for ch in stream(srv, body) if ch["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == "", deltas
    assert [(t["name"], t["arguments"]) for t in streamed_calls(deltas)] == [("now", "{}")], deltas


@check("Mistral v11 and DeepSeek formats, tool_choice auto: this model's text stays content, streamed the same "
       "(text that may begin a call or a marker is held back, then sent); the tools are in the prompt; a history with "
       "calls renders")
def _():
    for kind in ("mistral_v11", "deepseek"):
        srv = servers[kind]
        base = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12, "seed": 3}
        auto = auto_text(srv, base)
        history = dict(base, tools=[UNIT], messages=[
            {"role": "user", "content": "Use Celsius."},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "a1B2c3D4e", "type": "function", "function": {
                "name": "set_unit", "arguments": "{\"unit\": \"c\"}"}}]},
            {"role": "tool", "tool_call_id": "a1B2c3D4e", "content": "ok"},
            {"role": "user", "content": "Thanks"}])
        j = chat(srv, history)
        assert j["usage"]["prompt_tokens"] > auto["usage"]["prompt_tokens"], (j, auto)
        # a Llama 3-style call object (guided_json makes this model write one) is no call in these formats: content
        call = {"type": "object", "properties": {"name": {"const": "now"}, "parameters": {
            "type": "object", "properties": {}, "additionalProperties": False}}, "required": ["name", "parameters"]}
        body = dict(base, tools=[UNIT, NOW], guided_json=call, max_tokens=60, logit_bias=CLOSERS)
        j = chat(srv, body)
        c = j["choices"][0]
        assert "tool_calls" not in c["message"] and c["finish_reason"] == "stop", j
        assert json.loads(c["message"]["content"]) == {"name": "now", "parameters": {}}, j
        deltas = [ch["choices"][0] for ch in stream(srv, body) if ch["choices"]]
        assert "".join(d["delta"].get("content") or "" for d in deltas) == c["message"]["content"], deltas


@check("a history with an assistant's call (arguments as a JSON text) and the tool's result renders and answers")
def _():
    body = {"messages": [
        {"role": "user", "content": "Use Celsius."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "set_unit", "arguments": "{\"unit\": \"c\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "user", "content": "Thanks"}], "tools": [UNIT], "max_tokens": 4}
    j = chat(servers["json"], body)
    assert j["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), j
    bad = dict(body, messages=[{"role": "assistant", "tool_calls": [{"function": {}}]}])
    j = chat(servers["json"], bad, 400)
    assert j["error"]["param"] == "messages" and "tool_calls" in j["error"]["message"], j


@check("misuse: 400 naming the parameter (a template without tools, completions, unknown names, bad tools, JSON "
       "format with a forced call, logprobs in a tool stream, the legacy functions)")
def _():
    msgs = [{"role": "user", "content": "x"}]
    cases = [
        (servers["none"], "/v1/chat/completions", {"messages": msgs, "tools": [UNIT]}, "tools", "not supported"),
        (servers["json"], "/v1/completions", {"prompt": "x", "tools": [UNIT]}, "tools", "chat completions"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tools": [UNIT],
                                                   "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice", "nope"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tool_choice": "required"}, "tool_choice",
         "needs 'tools'"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tools": [{"type": "function"}]}, "tools",
         "tools[0]"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tools": [UNIT, UNIT]}, "tools", "repeats"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tools": [UNIT], "tool_choice": "required",
                                                   "response_format": {"type": "json_object"}}, "tool_choice", "JSON"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "tools": [UNIT], "stream": True,
                                                   "logprobs": True}, "logprobs", "stream"),
        (servers["json"], "/v1/chat/completions", {"messages": msgs, "functions": [{"name": "f"}]}, "functions",
         "legacy"),
    ]
    for srv, path, body, param, words in cases:
        st, _, j, _ = srv.post(path, body)
        assert st == 400, (body, st, j)
        assert j["error"]["param"] == param and words in j["error"]["message"], (body, j)


for srv in servers.values():
    stop_checked(srv)
for d in dirs.values():
    shutil.rmtree(d, ignore_errors=True)
finish("function calling end to end")
