#!/usr/bin/env python3
"""Write the knowledge-base test corpus: the 79 topics of the Python Language Reference that CPython ships as
`pydoc_data/topics.py` (the text `help("with")` shows), one JSON Lines document per topic.

    .venv-ref/bin/python models/generate_kb_corpus.py

Writes models/fixtures/corpus/python-reference.jsonl: {"id": topic, "title": its first line, "text": the
topic, "metadata": {"source": "CPython 3.11 pydoc_data.topics"}}. The text is the Python documentation,
Copyright (c) 2001-2023 Python Software Foundation, distributed under the PSF License Agreement (see
models/fixtures/corpus/NOTICE); it is real reference text with answers a retrieval test can ask for.
"""

import json
import os
import sys

import pydoc_data.topics

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "corpus", "python-reference.jsonl")


def main():
    topics = pydoc_data.topics.topics
    with open(OUT, "w") as f:
        for name in sorted(topics):
            text = topics[name].strip()
            title = text.splitlines()[0].strip()
            source = f"CPython {sys.version_info.major}.{sys.version_info.minor} pydoc_data.topics"
            f.write(json.dumps({"id": name, "title": title, "text": text, "metadata": {"source": source}}) + "\n")
    print(f"wrote {OUT}: {len(topics)} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
