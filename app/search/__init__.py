"""Search over completed tasks: documents, index backends, the outbox that feeds them.

    documents.py   pure: result document + task row -> search document; query parsing
    base.py        the SearchIndex contract and the backend registry
    embedded.py    SQLite FTS5 files in DATA_DIR/search (default)
    elastic.py     Elasticsearch 9 behind a versioned alias (ELASTICSEARCH_URL)
    embeddings.py  MiniLM sentence vectors for semantic=true
    outbox.py      index_outbox rows written with each completion, drained by consumers

Importing this package is cheap: backends load their client libraries when chosen.
"""
