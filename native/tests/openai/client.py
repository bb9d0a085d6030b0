"""OpenAI's own Python client against `lens serve` (driven by native/tests/openai.rs).

    client.py BASE_URL MODEL IMAGE_FILE QUESTION MAX_TOKENS

Asks about the image (a data URL) greedily, whole and streamed (with `include_usage`), then with an unknown
model, and prints one JSON object of what the client returned: nothing here compares, the Rust test does.
"""

import base64
import json
import sys
import time

import openai


def main():
    base_url, model, image_file, question, max_tokens = sys.argv[1:6]
    with open(image_file, "rb") as f:
        url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": question}]}]
    out = {"openai": openai.__version__}

    whole = client.chat.completions.create(model=model, messages=messages, temperature=0,
                                           max_tokens=int(max_tokens))
    out["whole"] = {"content": whole.choices[0].message.content, "role": whole.choices[0].message.role,
                    "finish_reason": whole.choices[0].finish_reason, "id": whole.id,
                    "usage": whole.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})}

    started = time.monotonic()
    chunks = []
    stream = client.chat.completions.create(model=model, messages=messages, temperature=0,
                                            max_tokens=int(max_tokens), stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        chunks.append({"at": time.monotonic() - started, "chunk": chunk.model_dump(exclude_none=True)})
    out["chunks"] = chunks

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        out["unknown_model"] = None
    except openai.BadRequestError as e:
        out["unknown_model"] = {"status": e.status_code, "code": e.code, "type": e.type, "message": e.message}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
