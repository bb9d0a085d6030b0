#!/usr/bin/env python3
"""Chat-template fixtures for lens-models' `chat_template` (minijinja) against transformers' own renderer.

Writes models/fixtures/chat_templates.json: templates in the style of the published ones (LLaMA-2 chat, LLaMA-3
instruct, a LLaMA-3.1-like one with tools, `namespace`, `tojson`, loop controls and `strftime_now`, LLaVA-1.5 with
`{% generation %}` tags and image parts) and conversations (unicode, a system turn, several images, assistant turns,
roles out of order), each rendered by `transformers.utils.chat_template_utils.render_jinja_template` (transformers
5.23.0, what `apply_chat_template(tokenize=False)` calls) with and without the generation prompt — or the message
of the exception the template raised.

Run from the repository root: .venv-ref/bin/python models/generate_chat_template_fixtures.py
"""

import json
from pathlib import Path

import jinja2
from transformers.utils.chat_template_utils import render_jinja_template

OUT = Path(__file__).resolve().parent / "fixtures" / "chat_templates.json"

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Multi-line, with whitespace control, lstrip/trim_blocks at work, namespace, loop controls, tojson and a date.
LLAMA31_LIKE = """{{- bos_token }}
{%- set date_len = strftime_now("%d %b %Y") | length %}
{%- set ns = namespace(system="", count=0) %}
{%- if messages[0]['role'] == 'system' %}
    {%- set ns.system = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Date length: " ~ date_len ~ "\\n" }}
{{- ns.system }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] == 'tool' %}
        {%- continue %}
    {%- endif %}
    {%- set ns.count = ns.count + 1 %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {%- if message['content'] is string %}
        {{- message['content'] | trim }}
    {%- else %}
        {{- message['content'] | tojson(indent=2) }}
    {%- endif %}
    {{- '<|eot_id|>' }}
    {%- if ns.count > 5 %}{% break %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
{{- "\\n" ~ (messages | map(attribute='role') | list | tojson) }}
"""

LLAVA = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

TEMPLATES = {
    "llama2": {"source": LLAMA2, "bos_token": "<s>", "eos_token": "</s>"},
    "llama3": {"source": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama31_like": {"source": LLAMA31_LIKE, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llava": {"source": LLAVA, "bos_token": "<s>", "eos_token": "</s>"},
}


def text(role, content):
    return {"role": role, "content": content}


def parts(role, n_images, content):
    return {"role": role, "content": [{"type": "image"}] * n_images + [{"type": "text", "text": content}]}


TEXT_CHATS = [
    [text("user", "Hello, who are you?")],
    [text("system", "You are terse."), text("user", "  What is in a photo of a cat?  ")],
    [text("user", "Grüße aus Köln — 東京 🐈‍⬛"), text("assistant", " Hallo! "), text("user", "quote \" and \\ and\nnewline")],
    [text("user", "a"), text("user", "b")],  # roles out of order: LLaMA-2's template raises
    [text("system", "sys"), text("user", "1"), text("assistant", "2"), text("tool", "ignored"), text("user", "3")],
    [text("user", "</s>[INST] not a turn [/INST]")],
]

IMAGE_CHATS = [
    [parts("user", 1, "What is shown in this image?")],
    [parts("user", 2, "Compare these two photos.")],
    [parts("user", 1, "Describe it."), parts("assistant", 0, "A cat on a sofa."), parts("user", 1, "And this one? ✨")],
    [{"role": "system", "content": [{"type": "text", "text": "Be precise."}]}, parts("user", 3, "Count the images.")],
]


def render(name, messages, add_generation_prompt):
    t = TEMPLATES[name]
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=t["source"],
            add_generation_prompt=add_generation_prompt,
            bos_token=t["bos_token"],
            eos_token=t["eos_token"],
        )
        return {"expected": rendered[0]}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def main():
    cases = []
    for name in ("llama2", "llama3", "llama31_like"):
        for messages in TEXT_CHATS:
            for agp in (True, False):
                cases.append({"template": name, "messages": messages, "add_generation_prompt": agp,
                              **render(name, messages, agp)})
    for name in ("llava", "llama31_like"):  # the second shows parts through `tojson(indent=2)`
        for messages in IMAGE_CHATS:
            for agp in (True, False):
                cases.append({"template": name, "messages": messages, "add_generation_prompt": agp,
                              **render(name, messages, agp)})
    assert any("error" in c for c in cases), "the roles-out-of-order case must raise"
    OUT.write_text(json.dumps({"templates": TEMPLATES, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"{OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
